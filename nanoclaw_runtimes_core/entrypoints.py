"""The installed runtimes' entry points, remembered between runs.

Scanning every installed distribution's metadata costs tens of milliseconds,
on every run. The result is kept in the user's cache folder, keyed on the
import path and the modification times of its folders (installing or removing
a distribution changes its folder), and rescanned when anything differs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .digest import sha256_hex
from .hookspecs import PROJECT_NAME
from .record import Record


class Distribution(Record, kw_only=False):
    name: str
    version: str


class RuntimeEntryPoint(Record, kw_only=False):
    """What the registry needs of an entry point: its name, target and distribution."""

    name: str
    value: str
    dist: Distribution | None

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
        return obj


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nanoclaw-runtimes" / "entry-points.json"


def _key() -> str:
    # sys.path[0] is the script's folder or the current one: its mtime changes with every file
    # written there, and distributions are not installed into it.
    parts = []
    for entry in sys.path[1:]:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    return sha256_hex("\n".join(parts).encode())


def _scan() -> list[RuntimeEntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=PROJECT_NAME):
        dist = getattr(ep, "dist", None)
        found.append(
            RuntimeEntryPoint(
                name=ep.name,
                value=ep.value,
                dist=Distribution(dist.name, dist.version) if dist is not None else None,
            )
        )
    return found


def _cached(path: Path, key: str) -> list[RuntimeEntryPoint] | None:
    """The cached entry points when the cache is for ``key``, else None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(path.read_text())
        if data["key"] == key:
            return [
                RuntimeEntryPoint(
                    name=e["name"],
                    value=e["value"],
                    dist=Distribution(e["dist"], e["version"]) if e.get("dist") else None,
                )
                for e in data["entryPoints"]
            ]
    return None


def runtime_entry_points(*, fresh: bool = False) -> list[RuntimeEntryPoint]:
    """Every installed ``nanoclaw_runtimes`` entry point: from the cache when it is current and
    not ``fresh``, else scanned (and the cache rewritten)."""
    key = _key()
    path = _cache_file()
    cached = None if fresh else _cached(path, key)
    if cached is not None:
        return cached
    found = _scan()
    record = {
        "key": key,
        "entryPoints": [
            {
                "name": e.name,
                "value": e.value,
                "dist": e.dist.name if e.dist else None,
                "version": e.dist.version if e.dist else None,
            }
            for e in found
        ],
    }
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    return found
