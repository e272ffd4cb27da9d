"""The image lifecycle: one persistent raw disk per group, cloned from a base on first use.

Layout (``VIBE_IMAGES_DIR``, relative to the project root)::

    base.raw            a base (VIBE_BASE_IMAGE / containerConfig.vibeImage names it)
    custom-dev.raw      another base a group may name
    dev.raw             group "dev"'s own disk: its persistent state
    .dev.raw.partial-…  a clone in progress (or left by a killed one: removed at next use)

A group's disk is always ``{group}.raw``, so no two groups share one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attrs import define

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import Project, StatsRow

from .cow import TEMP_TAG, CloneResult, clone_image, remove_stale_temps
from .settings import plain_image_name

DISK_SUFFIX = ".raw"
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def images_dir(project: Project, settings: Any) -> Path:
    """The images folder of a project (``VIBE_IMAGES_DIR`` resolved against the root)."""
    return project.resolve(settings.images_dir)


def base_path(project: Project, settings: Any) -> Path:
    """The base image a group's disk is cloned from, checked to be a plain name in the folder."""
    name = str(settings.base_image)
    try:
        plain_image_name(None, None, name)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(f"VIBE_BASE_IMAGE / containerConfig.vibeImage {exc}") from None
    return images_dir(project, settings) / name


def group_disk(project: Project, settings: Any, folder: str) -> Path:
    """The group's own persistent disk, ``{images_dir}/{folder}.raw``."""
    if not _GROUP_NAME.match(folder):
        raise UserError(f"invalid group folder name {folder!r}")
    return images_dir(project, settings) / f"{folder}{DISK_SUFFIX}"


def missing_base_message(base: Path) -> str:
    """What to tell a user whose base image does not exist."""
    return (
        f"the vibe base image {base} does not exist. Build it with "
        f"`nanoclaw-runtimes prepare --base vibe`, or copy a raw Linux disk image there "
        f"(`cp my-image.raw {base}`), or point VIBE_BASE_IMAGE (or the group's "
        f"containerConfig.vibeImage) at an image that exists in {base.parent}"
    )


@define(frozen=True, kw_only=True)
class EnsureResult:
    """The group's disk, and how it was made (None when it already existed)."""

    disk: Path
    base: Path
    clone: CloneResult | None
    removed_temps: tuple[Path, ...] = ()


def ensure_group_disk(
    project: Project,
    settings: Any,
    folder: str,
    *,
    progress: Callable[[int], None] = lambda n: None,
) -> EnsureResult:
    """Create the group's disk from its base if it does not exist yet (caller holds the group lock).

    Removes temporaries of this group's disk left by a killed clone first.
    """
    base = base_path(project, settings)
    disk = group_disk(project, settings, folder)
    if disk == base:
        raise UserError(
            f"group {folder!r} would use the base image {base.name} as its own disk; "
            f"name the base differently (VIBE_BASE_IMAGE / containerConfig.vibeImage) "
            f"or rename the group"
        )
    removed = tuple(remove_stale_temps(disk))
    if disk.exists():
        if not disk.is_file():
            raise UserError(f"{disk} is not a regular file; remove it so it can be re-created")
        return EnsureResult(disk=disk, base=base, clone=None, removed_temps=removed)
    if not base.is_file():
        raise UserError(missing_base_message(base))
    disk.parent.mkdir(parents=True, exist_ok=True)
    result = clone_image(base, disk, progress=progress)
    return EnsureResult(disk=disk, base=base, clone=result, removed_temps=removed)


def reset_group_disk(project: Project, settings: Any, folder: str) -> list[str]:
    """Delete the group's disk and its stale temporaries (caller holds the group lock)."""
    disk = group_disk(project, settings, folder)
    removed: list[str] = []
    for tmp in remove_stale_temps(disk):
        removed.append(f"removed leftover partial clone {tmp.name}")
    try:
        size_mb = disk.stat().st_blocks * 512 / 2**20
        disk.unlink()
    except FileNotFoundError:
        return removed
    removed.append(
        f"removed {disk} ({size_mb:.0f} MB allocated); the next run clones it again from its base"
    )
    return removed


# --------------------------------------------------------------------------- stats


def _existing_groups(project: Project) -> set[str]:
    try:
        return {e.name for e in os.scandir(project.groups_dir) if e.is_dir()}
    except FileNotFoundError:
        return set()


def image_stats(project: Project, settings: Any, *, runtime: str = "vibe") -> list[StatsRow]:
    """One row per image in the images folder: group disks, bases and leftover partial clones.

    A ``{name}.raw`` is a group disk when ``groups/{name}`` exists and it is not
    the configured base; every other image is a base.
    """
    folder = images_dir(project, settings)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    groups = _existing_groups(project)
    default_base = str(settings.base_image)
    rows: list[StatsRow] = []
    for entry in entries:
        name = entry.name
        partial = name.startswith(".") and TEMP_TAG in name
        if not partial and (name.startswith(".") or not name.endswith(DISK_SUFFIX)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we looked
        if not entry.is_file(follow_symlinks=False):
            continue
        stem = name[: -len(DISK_SUFFIX)] if name.endswith(DISK_SUFFIX) else name
        if partial:
            kind, group, note = "partial", None, "an unfinished clone or build; removed at next use"
        elif stem in groups and name != default_base:
            kind, group, note = "disk", stem, ""
        else:
            kind, group = "base", None
            note = "" if name == default_base else "another base (a group's vibeImage)"
            if name != default_base and _GROUP_NAME.match(stem) and stem not in groups:
                note += f"; or the disk of a group without a folder groups/{stem}"
        rows.append(
            StatsRow(
                runtime=runtime,
                group=group,
                kind=kind,
                path=entry.path,
                apparent_mb=st.st_size / 2**20,
                allocated_mb=st.st_blocks * 512 / 2**20,
                modified=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
                note=note,
            )
        )
    return rows
