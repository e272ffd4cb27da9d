"""One invalid value, where it came from, and how several are reported at once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError
from ..record import Record

ENVIRONMENT = "environment"
"""The source name used in messages for values taken from the process environment."""


class Problem(Record, kw_only=False):
    """One invalid value: where it came from (a file, "environment" or a flag), which key
    or variable, and what is wrong with it."""

    source: str
    location: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.location) if p]
        return ": ".join([*parts, self.message])


def raise_problems(*groups: Iterable[Problem | str]) -> None:
    """Raise one :class:`~nanoclaw_runtimes_core.errors.ConfigError` with every problem, if any.

    A problem found twice (e.g. a key checked by the core and by a runtime) is
    reported once.
    """
    lines: list[str] = []
    for problems in groups:
        for problem in problems:
            line = str(problem)
            if line not in lines:
                lines.append(line)
    if lines:
        raise ConfigError(lines)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely meant to be (a typo, or another case), if any."""
    import difflib

    known = sorted(set(candidates))
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    lowered = {c.lower(): c for c in known}
    return lowered.get(word.strip().lower())


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``did you mean "x"?`` for the nearest candidate, else the list of known names."""
    known = sorted(set(candidates))
    close = closest(word, known)
    if close is not None:
        return f'did you mean "{close}"?'
    if not known:
        return "no keys are allowed here"
    return "known keys: " + ", ".join(known)


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (strings quoted), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
