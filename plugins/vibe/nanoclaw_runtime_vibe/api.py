"""The seed's Python API: reset a group's image, list the images and what they cost.

::

    from nanoclaw_runtime_vibe import reset_vibe_image, get_vibe_image_stats
    reset_vibe_image("dev", root="/path/to/nanoclaw")
    for row in get_vibe_image_stats(root="/path/to/nanoclaw"):
        print(row.group, row.kind, row.apparent_mb, row.allocated_mb, row.modified)
"""

from __future__ import annotations

import os

import nanoclaw_runtimes_core as nc


def reset_vibe_image(group: str, *, root: str | os.PathLike[str] = ".") -> list[str]:
    """Power off ``group``'s warm VM and delete its disk (waiting for a running execution of
    the group); the next run clones it again from its base. Returns what was removed."""
    return nc.Runtimes(root).reset(group, runtime="vibe")


def get_vibe_image_stats(*, root: str | os.PathLike[str] = ".") -> list[nc.StatsRow]:
    """One row per image (group disks, bases, clones in progress) and per warm VM: group,
    kind, apparent and allocated MB, modified time."""
    return nc.Runtimes(root).stats(["vibe"])
