"""Strict JSON documents: UTF-8, no duplicate keys, no NaN, bounded size and nesting."""

from __future__ import annotations

import json
from typing import Any

from ..settings.problems import Problem

MAX_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 32


class _JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers keys written more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    dupes: list[str] = []
    for key, value in pairs:
        if key in obj and key not in dupes:
            dupes.append(key)
        obj[key] = value
    obj.duplicates = tuple(dupes)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write a number")


def _depth(text: str) -> int:
    """The deepest nesting of objects and lists in ``text`` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse(data: bytes, file: str) -> tuple[Any, list[Problem]]:
    """Parse ``data`` as a strict JSON document; returns (document or None, problems).

    ``file`` names the document in messages (``groups/dev/config.json``).
    """
    if len(data) > MAX_BYTES:
        return None, [Problem(file, "", f"is {len(data)} bytes; at most {MAX_BYTES} are read")]
    try:
        # As "utf-8-sig" decodes (one leading BOM dropped), without loading that codec's module.
        text = data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(file, "", f"is not UTF-8 text (bad byte at offset {exc.start})")]
    if _depth(text) > MAX_DEPTH:
        return None, [
            Problem(file, "", f"nests objects or lists more than {MAX_DEPTH} levels deep")
        ]
    try:
        document = json.loads(
            text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return None, [Problem(file, where, f"invalid JSON: {exc.msg}")]
    except (ValueError, RecursionError) as exc:
        return None, [Problem(file, "", f"invalid JSON: {exc}")]
    problems: list[Problem] = []
    _duplicates(document, "", file, problems)
    return document, problems


def _duplicates(value: Any, path: str, file: str, problems: list[Problem]) -> None:
    if isinstance(value, _JsonObject):
        for key in value.duplicates:
            where = f"{path}.{key}" if path else key
            problems.append(
                Problem(file, where, "duplicate key; only one may be written, remove the other")
            )
        for key, item in value.items():
            _duplicates(item, f"{path}.{key}" if path else key, file, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _duplicates(item, f"{path}[{i}]", file, problems)


def kind(value: Any) -> str:
    """How a JSON value is named in messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return f"the number {value}"
