"""The configuration reference and the JSON Schema of ``config.json``, from the declarations.

Both come from the same source as the checks themselves (the settings classes
and their ``help``), so they cannot drift::

    nanoclaw-runtimes config schema > config.schema.json
    python -m nanoclaw_runtimes_core.settings.schema docs/configuration.md   # regenerate
"""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..record import field_types, is_record
from ..record import fields as record_fields
from .core import CoreSettings
from .fields import Field, fields_of
from .values import json_key, optional_inner, sequence_item, type_word

BEGIN = "<!-- settings reference: generated from the settings classes -->"
END = "<!-- end of settings reference -->"


def _type_schema(t: Any, words: bool = False) -> dict[str, Any]:
    inner = optional_inner(t)
    if inner is not None:
        return _type_schema(inner, words)
    if words:
        return {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if t in simple:
        return {"type": simple[t]}
    if typing.get_origin(t) is typing.Literal:
        return {"enum": list(typing.get_args(t))}
    item = sequence_item(t)
    if item is not None:
        return {"type": "array", "items": _type_schema(item)}
    if is_record(t):
        hints = field_types(t)
        declared = record_fields(t).values()
        props = {json_key(a): _type_schema(hints[a.name]) for a in declared}
        required = [json_key(a) for a in declared if a.required]
        out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = required
        return out
    return {}


def _field_schema(f: Field, owner: str) -> dict[str, Any]:
    schema = _type_schema(f.type, f.info.words)
    for check in f.info.validators:
        schema.update(getattr(check, "schema", {}))
    where = f" Variable: {f.info.env}." if f.info.env else ""
    schema["description"] = f"{f.info.help}{where} ({owner})"
    if f.default not in (None, ()) and not is_record(type(f.default)):
        schema["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    return schema


def config_schema(runtimes: Mapping[str, type | None]) -> dict[str, Any]:
    """The JSON Schema of ``groups/{folder}/config.json`` for the given runtimes' settings."""
    props: dict[str, Any] = {}
    for f in fields_of(CoreSettings):
        if f.info.key:
            props[f.info.key] = _field_schema(f, "every runtime")
    if "runtime" in props:
        props["runtime"]["enum"] = sorted(runtimes)
    for name, cls in sorted(runtimes.items()):
        for f in fields_of(cls) if cls is not None else ():
            if not f.info.key:
                continue
            if f.info.key in props:
                props[f.info.key]["description"] += f"; runtime {name}: {f.info.help}"
            else:
                props[f.info.key] = _field_schema(f, f"runtime {name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nanoclaw-runtimes group config (groups/{folder}/config.json)",
        "type": "object",
        "properties": {
            "$schema": {"type": "string"},
            "containerConfig": {
                "type": "object",
                "properties": props,
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def _default_text(f: Field) -> str:
    if f.default is None or f.default == ():
        return "unset"
    if f.default == "":
        return "empty"
    if isinstance(f.default, tuple):
        return ", ".join(str(v) for v in f.default)
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    return str(f.default)


def reference_markdown(runtimes: Mapping[str, type | None]) -> str:
    """One table per settings class: key, variable, type, default, what it does."""
    parts = []
    for title, cls in [
        ("Every runtime (the core)", CoreSettings),
        *[(f"Runtime `{n}`", c) for n, c in sorted(runtimes.items())],
    ]:
        if cls is None:
            continue
        rows = [
            "| `containerConfig` key | variable | type | default | what it does |",
            "|---|---|---|---|---|",
        ]
        for f in fields_of(cls):
            key = f"`{f.info.key}`" if f.info.key else "—"
            env = f"`{f.info.env}`" if f.info.env else "—"
            help_text = f.info.help.replace("|", "\\|")
            default = _default_text(f)
            shown = default if default in ("unset", "empty") else f"`{default}`"
            rows.append(f"| {key} | {env} | {type_word(f.type)} | {shown} | {help_text} |")
        parts.append(f"### {title}\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def installed_runtime_settings() -> dict[str, type | None]:
    """The settings classes of the installed runtimes that load."""
    from ..plugins import Registry

    registry = Registry()
    registry.load_entry_points()
    return {i.name: i.settings_class for i in registry.infos() if i.error is None}


def render_into(document: str, runtimes: Mapping[str, type | None]) -> str:
    """``document`` with the reference between the marker lines replaced."""
    head, sep, rest = document.partition(BEGIN)
    if not sep or END not in rest:
        raise ValueError(f"the document has no {BEGIN} ... {END} section")
    _old, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{reference_markdown(runtimes)}\n\n{END}{tail}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m nanoclaw_runtimes_core.settings.schema DOCUMENT.md", file=sys.stderr
        )
        return 2
    path = Path(argv[0])
    path.write_text(render_into(path.read_text(), installed_runtime_settings()))
    print(json.dumps({"updated": str(path)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
