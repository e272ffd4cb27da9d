"""Resolving a settings class from its sources, with one documented precedence.

For each field, the first that sets it wins:

1. a command-line override (``--timeout``, ``prepare --option``),
2. the group's ``containerConfig.<key>`` in ``groups/{folder}/config.json``
   (a JSON ``null`` counts as not set),
3. the process environment ``<ENV>`` (an empty value counts as not set),
4. the project's ``.env`` ``<ENV>`` (likewise),
5. the field's default.

Every problem of every source is collected, each naming where the bad value
came from; a bad value is replaced by its default so the rest can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ..record import Record
from .fields import Field, fields_of
from .problems import ENVIRONMENT, Problem
from .values import from_json, from_text

T = TypeVar("T")

DEFAULT = "default"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Origin(Record, kw_only=False):
    """Where a resolved value came from: ``("groups/dev/config.json", "containerConfig.cpus")``,
    ``("environment", "VIBE_CPUS")``, ``(".env", "VIBE_CPUS")``, ``("--timeout", "")`` or
    ``("default", "")``."""

    source: str
    location: str = ""

    def __str__(self) -> str:
        return ": ".join(p for p in (self.source, self.location) if p)


class Sources(Record):
    """The places settings are read from, for one group (or none)."""

    group: Mapping[str, Any] | None = None
    """The group's ``containerConfig`` object as parsed (camelCase keys)."""
    group_file: str = ""
    """The group's file as shown to users: ``groups/dev/config.json``."""
    environ: Mapping[str, str] = _EMPTY
    dotenv: Mapping[str, str | None] = _EMPTY
    dotenv_file: str = ".env"


class Resolved(Record, Generic[T], kw_only=False):
    """A resolved settings instance (None if even the defaults failed), where each value came
    from, and every problem found."""

    settings: T | None
    origins: Mapping[str, Origin]
    problems: tuple[Problem, ...]


def resolve(
    cls: type[T],
    sources: Sources,
    *,
    overrides: Mapping[str, tuple[Any, str]] = _EMPTY,
    env_aliases: Mapping[str, str] = _EMPTY,
) -> Resolved[T]:
    """Resolve every setting of ``cls`` (see the module docstring); never raises for bad values.

    ``overrides`` maps a field name to ``(value, flag)`` for values given on the
    command line. ``env_aliases`` maps a field name to another variable read
    before its own (a runtime's ``VIBE_TIMEOUT`` before the core's
    ``CONTAINER_TIMEOUT``).
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for f in fields_of(cls):
        found = _value_of(f, sources, overrides, env_aliases.get(f.name), problems)
        if found is None:
            origins[f.name] = Origin(DEFAULT)
            continue
        value, origin = found
        if _validate(f, value, origin, problems):
            values[f.alias] = value
            origins[f.name] = origin
        else:
            origins[f.name] = Origin(DEFAULT)
    try:
        settings: T | None = cls(**values)
    except (ValueError, TypeError) as exc:
        problems.append(Problem(cls.__qualname__, "", str(exc)))
        settings = None
    return Resolved(settings, MappingProxyType(origins), tuple(problems))


def _value_of(
    f: Field,
    sources: Sources,
    overrides: Mapping[str, tuple[Any, str]],
    alias: str | None,
    problems: list[Problem],
) -> tuple[Any, Origin] | None:
    """The value and origin of one field from the first source that sets it, or None."""
    info = f.info
    if f.name in overrides:
        value, flag = overrides[f.name]
        return value, Origin(flag)
    if info.key and sources.group and sources.group.get(info.key) is not None:
        location = f"containerConfig.{info.key}"
        value, issues = from_json(sources.group[info.key], f.type, path=location, words=info.words)
        if issues:
            problems.extend(
                Problem(sources.group_file, where, message) for where, message in issues
            )
            return None
        return value, Origin(sources.group_file, location)
    for name in (alias, info.env):
        if not name:
            continue
        for source_name, table in (
            (ENVIRONMENT, sources.environ),
            (sources.dotenv_file, sources.dotenv),
        ):
            if name not in table or table[name] == "":
                continue
            text = table[name]
            origin = Origin(source_name, name)
            if text is None:
                problems.append(Problem(source_name, name, f"has no value; write {name}=VALUE"))
                return None
            try:
                return from_text(text, f.type, words=info.words), origin
            except ValueError as exc:
                problems.append(Problem(source_name, name, str(exc)))
                return None
    return None


def _validate(f: Field, value: Any, origin: Origin, problems: list[Problem]) -> bool:
    if value is None:
        return True
    for check in f.info.validators:
        try:
            check(value)
        except ValueError as exc:
            problems.append(Problem(origin.source, origin.location, str(exc)))
            return False
    return True


def check_value(cls: type, name: str, value: Any, origin: Origin) -> list[Problem]:
    """The problems of one value for field ``name`` of ``cls`` (its validators), for values
    that come from elsewhere (a CLI flag)."""
    problems: list[Problem] = []
    for f in fields_of(cls):
        if f.name == name:
            _validate(f, value, origin, problems)
    return problems
