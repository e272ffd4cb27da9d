"""Disk usage of what a group keeps with an ephemeral runtime: its workspace and its logs."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from attrs import define

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
