"""The seed's Python API: reset a group's image, list the images and what they cost.

::

    from nanoclaw_runtime_vibe import reset_vibe_image, get_vibe_image_stats
    reset_vibe_image("dev", root="/path/to/nanoclaw")
    for row in get_vibe_image_stats(root="/path/to/nanoclaw"):
        print(row.group, row.kind, row.apparent_mb, row.allocated_mb, row.modified)
"""

from __future__ import annotations

import os

from nanoclaw_runtimes_core.models import StatsRow


def reset_vibe_image(group: str, *, root: str | os.PathLike[str] = ".") -> list[str]:
    """Delete ``group``'s disk (waiting for a running execution of the group); the next run
    clones it again from its base. Returns what was removed."""
    from nanoclaw_runtimes_core import Runtimes

    return Runtimes(root).reset(group, runtime="vibe")


def get_vibe_image_stats(*, root: str | os.PathLike[str] = ".") -> list[StatsRow]:
    """One row per image (group disks and bases): group, kind, apparent and allocated MB,
    modified time."""
    from nanoclaw_runtimes_core import Runtimes

    return Runtimes(root).stats(["vibe"])
