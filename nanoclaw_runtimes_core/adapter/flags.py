"""Flags as docker's command line reads them (Go's pflag), and the adapter's one error type.

``--name N``, ``--name=N``, ``-e K=V``, ``-eK=V``, ``-e=K=V`` and combined short
booleans (``-it``) all parse; ``--`` ends the flags. ``run`` stops at its first
positional word (the image: what follows is the container's command), the other
commands take flags anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..record import Record, field

ENGINE_FAILURE = 125
"""docker's status when the CLI or the engine, not the container, failed."""
TRUE_WORDS = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}


class AdapterError(Exception):
    """A failure of the adapter itself: one line for the user, and docker's exit status."""

    def __init__(self, message: str, status: int = ENGINE_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class Flag(Record):
    """One flag: its names (``-e``, ``--env``), whether it takes a value, where it is kept."""

    names: tuple[str, ...]
    dest: str
    value: bool = False
    refused: str = ""
    """Set for a flag that is known but not supported: the reason given to the user."""


class Parsed(Record):
    """The flags found (booleans, and every value of a value flag, in order) and positionals."""

    bools: dict[str, bool] = field(factory=dict)
    values: dict[str, list[str]] = field(factory=dict)
    positionals: list[str] = field(factory=list)

    def value(self, dest: str) -> str | None:
        """The last value given for ``dest`` (docker keeps the last of a repeated flag)."""
        found = self.values.get(dest)
        return found[-1] if found else None


def parse(
    words: Sequence[str], flags: Iterable[Flag], *, command: str, interspersed: bool = True
) -> Parsed:
    """Parse ``words`` against ``flags``; raises :class:`AdapterError` naming a bad flag."""
    by_name = {name: f for f in flags for name in f.names}
    parsed = Parsed()
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            parsed.positionals.extend(words[i:])
            break
        if not word.startswith("-") or word == "-":
            parsed.positionals.append(word)
            if not interspersed:
                parsed.positionals.extend(words[i:])
                break
            continue
        if word.startswith("--"):
            name, eq, inline = word.partition("=")
            spec = _known(by_name, name, command, by_name.values())
            if spec.value:
                if not eq:
                    if i >= len(words):
                        raise AdapterError(f"{command}: flag needs an argument: {name}")
                    inline = words[i]
                    i += 1
                _store(parsed, spec, inline)
            else:
                _store_bool(parsed, spec, inline if eq else None, name, command)
            continue
        # Short flags: booleans may be combined (-it); a value flag takes the rest of the word.
        j = 1
        while j < len(word):
            name = f"-{word[j]}"
            spec = _known(by_name, name, command, by_name.values())
            rest = word[j + 1 :]
            if spec.value:
                if rest.startswith("="):
                    rest = rest[1:]
                elif not rest:
                    if i >= len(words):
                        raise AdapterError(f"{command}: flag needs an argument: {name}")
                    rest = words[i]
                    i += 1
                _store(parsed, spec, rest)
                break
            if rest.startswith("="):
                _store_bool(parsed, spec, rest[1:], name, command)
                break
            _store_bool(parsed, spec, None, name, command)
            j += 1
    return parsed


def _known(by_name: dict[str, Flag], name: str, command: str, all_flags: Iterable[Flag]) -> Flag:
    spec = by_name.get(name)
    if spec is None:
        supported = sorted({f.names[-1] for f in all_flags if not f.refused})
        raise AdapterError(
            f"{command}: unknown flag: {name} (supported: {', '.join(supported) or 'none'})"
        )
    if spec.refused:
        raise AdapterError(f"{command}: {name} is not supported: {spec.refused}")
    return spec


def _store(parsed: Parsed, spec: Flag, value: str) -> None:
    parsed.values.setdefault(spec.dest, []).append(value)


def _store_bool(parsed: Parsed, spec: Flag, text: str | None, name: str, command: str) -> None:
    if text is None:
        parsed.bools[spec.dest] = True
        return
    found = TRUE_WORDS.get(text.lower())
    if found is None:
        raise AdapterError(f"{command}: {name}={text}: expected true or false")
    parsed.bools[spec.dest] = found
