"""Strict values: a JSON value or an environment string checked against a setting's type.

Nothing is converted silently: ``"4"`` is not 4, ``"false"`` is not False, 1.9
is not 1, ``true`` is not an integer. Supported types: ``str``, ``int``,
``float``, ``bool``, ``Literal[...]`` of strings, ``X | None``, ``tuple[X, ...]``
and records (:class:`~nanoclaw_runtimes_core.record.Record`: JSON objects with
camelCase keys, unknown keys refused), built once the value is known to be valid.
"""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Any, Literal, Union

from ..record import Field, Record, field_types, is_record
from ..record import fields as record_fields
from .problems import closest, show, suggest
from .validators import split_words

LARGEST_INT = 2**63 - 1
# Patterns, compiled (by re's cache) only when a variable holds a number to read.
_INT_TEXT = r"[+-]?[0-9]{1,19}"
_FLOAT_TEXT = r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SCALARS = (str, int, float, bool)


Issue = tuple[str, str]
"""(JSON path below the value, message)."""


# --------------------------------------------------------------------------- types


def _is_union(t: Any) -> bool:
    origin = typing.get_origin(t)
    return origin is Union or origin is types.UnionType


def optional_inner(t: Any) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if _is_union(t):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(t)) == 2:
            return args[0]
    return None


def sequence_item(t: Any) -> Any | None:
    """``X`` for ``tuple[X, ...]``, else None."""
    if typing.get_origin(t) is tuple:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _literal_choices(t: Any) -> tuple[Any, ...] | None:
    return typing.get_args(t) if typing.get_origin(t) is Literal else None


def check_supported(t: Any, *, from_env: bool, words: bool = False) -> str | None:
    """Why ``t`` cannot be a setting's type (None when it can)."""
    inner = optional_inner(t)
    if inner is not None:
        return check_supported(inner, from_env=from_env, words=words)
    if words:
        return None if sequence_item(t) is str else "a words= setting must be tuple[str, ...]"
    if t in _SCALARS:
        return None
    choices = _literal_choices(t)
    if choices is not None:
        return (
            None if all(isinstance(c, str) for c in choices) else "Literal choices must be strings"
        )
    item = sequence_item(t)
    if item is not None:
        if item in _SCALARS:
            return None
        if is_record(item) and not from_env:
            return None
        return f"type {t!r} is not supported (tuple items must be str, int, float or bool)"
    if is_record(t) and not from_env:
        return None
    if typing.get_origin(t) is list:
        return f"type {t!r}: use tuple[X, ...], not list (settings are immutable)"
    return (
        f"type {t!r} is not supported; "
        "use str, int, float, bool, Literal, X | None or tuple[X, ...]"
    )


def type_word(t: Any) -> str:
    """How a type is named in messages: "an integer", "a list of strings", "an object"."""
    words = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if t in words:
        return words[t]
    inner = optional_inner(t)
    if inner is not None:
        return type_word(inner) + " or null"
    item = sequence_item(t)
    if item is not None:
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return "a list of " + plural.get(item, "objects")
    choices = _literal_choices(t)
    if choices is not None:
        return "one of " + ", ".join(show(c) for c in choices)
    if is_record(t):
        return "an object"
    return getattr(t, "__name__", str(t))


def not_a_choice(t: Any, value: Any) -> str:
    """The problem with a value that is none of a ``Literal``'s choices, with the one it most
    likely meant."""
    message = f"expected {type_word(t)}, got {show(value)}"
    if isinstance(value, str):
        words = [c for c in _literal_choices(t) or () if isinstance(c, str)]
        close = closest(value, words)
        if close is not None:
            message += f'; did you mean "{close}"?'
    return message


# --------------------------------------------------------------------------- JSON values


def json_key(a: Field) -> str:
    """The JSON key of a field of a nested record (camelCase of its name, unless its metadata
    names one as ``json_key``)."""
    given = a.metadata.get("json_key")
    if isinstance(given, str):
        return given
    head, *rest = a.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def from_json(value: Any, t: Any, *, path: str, words: bool = False) -> tuple[Any, list[Issue]]:
    """Check a parsed JSON ``value`` against ``t``; returns (python value, issues).

    Paths in issues are absolute JSON paths built from ``path`` and the keys as
    the user wrote them (``containerConfig.additionalMounts[1].hostPath``).
    """
    issues: list[Issue] = []
    result = _json(value, t, path, words, issues)
    return result, issues


def _json(value: Any, t: Any, path: str, words: bool, issues: list[Issue]) -> Any:
    inner = optional_inner(t)
    if inner is not None:
        return None if value is None else _json(value, inner, path, words, issues)
    if words:
        if isinstance(value, str):
            try:
                return split_words(value)
            except ValueError as exc:
                issues.append((path, str(exc)))
                return None
        return _json(value, tuple[str, ...], path, False, issues)
    if t is str:
        if not isinstance(value, str):
            issues.append((path, f"expected a string, got {show(value)}"))
        elif "\x00" in value:
            issues.append((path, "must not contain a NUL character (\\u0000)"))
        else:
            return value
        return None
    if t is bool:
        if isinstance(value, bool):
            return value
        issues.append((path, f"expected true or false, got {show(value)}"))
        return None
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            issues.append((path, f"expected an integer, got {show(value)}"))
            return None
        if abs(value) > LARGEST_INT:
            issues.append((path, f"the number {show(value, 30)} is too large"))
            return None
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            issues.append((path, f"expected a number, got {show(value)}"))
            return None
        if isinstance(value, int) and abs(value) > LARGEST_INT:
            issues.append((path, f"the number {show(value, 30)} is too large"))
            return None
        number = float(value)
        if not math.isfinite(number):
            issues.append((path, f"expected a finite number, got {show(value)}"))
            return None
        return number
    choices = _literal_choices(t)
    if choices is not None:
        for choice in choices:
            if type(choice) is type(value) and choice == value:
                return choice
        issues.append((path, not_a_choice(t, value)))
        return None
    item = sequence_item(t)
    if item is not None:
        if not isinstance(value, list):
            issues.append((path, f"expected {type_word(t)}, got {show(value)}"))
            return None
        before = len(issues)
        out = tuple(_json(v, item, f"{path}[{i}]", False, issues) for i, v in enumerate(value))
        return out if len(issues) == before else None
    if is_record(t):
        return _object(value, t, path, issues)
    raise TypeError(f"unsupported setting type {t!r}")


def _object(value: Any, cls: type, path: str, issues: list[Issue]) -> Any:
    if not isinstance(value, dict):
        issues.append((path, f"expected an object, got {show(value)}"))
        return None
    hints = field_types(cls)
    by_key = {json_key(a): a for a in record_fields(cls).values()}
    before = len(issues)
    checked: dict[str, Any] = {}
    for key in value:
        if key not in by_key:
            issues.append((f"{path}.{key}", f"unknown key; {suggest(key, by_key)}"))
    for key, a in by_key.items():
        if key not in value:
            if a.required:
                issues.append((f"{path}.{key}", f"missing: {type_word(hints[a.name])} is required"))
            continue
        checked[key] = _json(value[key], hints[a.name], f"{path}.{key}", False, issues)
    if len(issues) != before:
        return None
    # The values are already checked and built (nested objects included): construct directly.
    return cls(**{by_key[k].name: v for k, v in checked.items()})


def to_json(value: Any) -> Any:
    """A setting's value as JSON data (``doctor --json``): records as objects with their JSON
    keys, tuples as lists."""
    if isinstance(value, Record):
        return {json_key(a): to_json(getattr(value, a.name)) for a in record_fields(value).values()}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    return value


# --------------------------------------------------------------------------- environment text


def from_text(text: str, t: Any, *, words: bool = False) -> Any:
    """Parse an environment variable's text as ``t``, strictly; raises ValueError with the reason.

    Integers are decimal (``-3``, ``4``; not ``4.0`` or ``0x4``); booleans are
    ``1/0, true/false, yes/no, on/off`` in any case; a tuple of strings is
    comma-separated (``a, b``); a ``words=`` setting is split like a shell would.
    """
    inner = optional_inner(t)
    if inner is not None:
        return from_text(text, inner, words=words)
    if words:
        return split_words(text)
    if t is str:
        return text
    stripped = text.strip()
    if t is bool:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError(f"expected a boolean (1/0, true/false, yes/no, on/off), got {show(text)}")
    if t is int:
        if not re.fullmatch(_INT_TEXT, stripped):
            if re.fullmatch(r"[+-]?[0-9]+", stripped):
                raise ValueError(f"the number {show(text, 30)} is too large")
            raise ValueError(f"expected a whole number, got {show(text)}")
        value = int(stripped)
        if abs(value) > LARGEST_INT:
            raise ValueError(f"the number {show(text, 30)} is too large")
        return value
    if t is float:
        if not re.fullmatch(_FLOAT_TEXT, stripped):
            raise ValueError(f"expected a number, got {show(text)}")
        number = float(stripped)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {show(text)}")
        return number
    choices = _literal_choices(t)
    if choices is not None:
        if stripped in choices:
            return stripped
        raise ValueError(not_a_choice(t, text))
    item = sequence_item(t)
    if item is not None:
        return tuple(from_text(part.strip(), item) for part in text.split(",") if part.strip())
    raise TypeError(f"type {t!r} cannot be read from an environment variable")
