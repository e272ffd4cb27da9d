"""Disk usage of what a group keeps with an ephemeral runtime: its workspace and its logs."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from attrs import define

from .naming import RUNTIME_NAME

_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MB = 1024 * 1024


@define(kw_only=True)
class Usage:
    """Sizes in bytes of a folder tree, and its newest modification time."""

    apparent: int = 0
    allocated: int = 0
    newest: float = 0.0

    def add(self, st: os.stat_result) -> None:
        self.apparent += st.st_size
        self.allocated += getattr(st, "st_blocks", 0) * 512
        self.newest = max(self.newest, st.st_mtime)

    @property
    def modified(self) -> datetime | None:
        return datetime.fromtimestamp(self.newest, tz=timezone.utc) if self.newest else None


def measure(folder: Path, *, skip: frozenset[str] = frozenset()) -> Usage:
    """Walk ``folder`` without following links; top-level names in ``skip`` are left out."""
    usage = Usage()
    stack = [(folder, True)]
    while stack:
        current, top = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if top and entry.name in skip:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            usage.add(st)
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), False))
    return usage


def runtime_of(group_dir: Path) -> str | None:
    """The ``containerConfig.runtime`` a group's config.json names, or None."""
    try:
        data = json.loads((group_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    config = data.get("containerConfig") if isinstance(data, dict) else None
    runtime = config.get("runtime") if isinstance(config, dict) else None
    return runtime if isinstance(runtime, str) else None


def container_groups(groups_dir: Path) -> Iterator[Path]:
    """Group folders that use this runtime or name no runtime (so may use it by default)."""
    try:
        entries = sorted(os.scandir(groups_dir), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name == "global" or not _FOLDER.fullmatch(entry.name):
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if runtime_of(Path(entry.path)) in (None, RUNTIME_NAME):
            yield Path(entry.path)
