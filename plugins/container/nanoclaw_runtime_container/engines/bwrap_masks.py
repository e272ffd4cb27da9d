"""Where masks and nested mounts land, without following a link the sandbox planted.

bwrap creates and mounts over a destination by its path, following links. A
destination inside another mount lies in a host folder, so a link there (one
the agent made in a read-write mount, or the user's own ``.env -> secrets/.env``)
would send the mount, or the empty file bwrap creates for it, elsewhere. Every
such destination is therefore checked on the host, component by component:

- no link: the destination is used as it is;
- a link: a mask goes where the link really leads, wherever a mount shows that
  place (a target outside every mount is not visible, so needs no mask); a
  mount is refused;
- missing in a read-only mount: nothing to hide, the mask is left out.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

import nanoclaw_runtimes_core as nc


class Placement(nc.Record):
    """One mask to apply: at ``container_path``, over a file or (``folder``) a folder."""

    container_path: str
    mask: nc.Mask
    folder: bool


def _covering(mounts: Sequence[nc.Mount], container_path: str) -> tuple[nc.Mount, str] | None:
    """The deepest mount showing ``container_path`` and the path below its root."""
    best: tuple[nc.Mount, str] | None = None
    for mount in mounts:
        root = posixpath.normpath(mount.container_path)
        if container_path == root:
            rel = ""
        elif container_path.startswith(root.rstrip("/") + "/"):
            rel = container_path[len(root.rstrip("/")) + 1 :]
        else:
            continue
        if best is None or len(root) >= len(posixpath.normpath(best[0].container_path)):
            best = (mount, rel)
    return best


def _walk(host_root: Path, rel: str) -> tuple[str, os.stat_result | None]:
    """``("ok", st)`` when every component of ``rel`` below ``host_root`` is a real entry,
    ``("link", None)`` when one is a link, ``("missing", None)`` when one is missing (and
    ``("missing-last", None)`` when only the last is)."""
    current = host_root
    parts = [p for p in rel.split("/") if p]
    for index, part in enumerate(parts):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return ("missing-last" if index == len(parts) - 1 else "missing"), None
        except OSError:
            return "missing", None
        if stat.S_ISLNK(st.st_mode):
            return "link", None
        if index == len(parts) - 1:
            return "ok", st
        if not stat.S_ISDIR(st.st_mode):
            return "missing", None
    return "ok", None


def _views(mounts: Sequence[nc.Mount], real: Path) -> list[str]:
    """Every container path where a mount shows the host path ``real`` (no links in it)."""
    found = []
    for mount in mounts:
        try:
            root = Path(os.path.realpath(mount.host_path))
        except OSError:
            continue
        if real == root:
            found.append(posixpath.normpath(mount.container_path))
        elif root in real.parents:
            rel = real.relative_to(root).as_posix()
            found.append(posixpath.join(posixpath.normpath(mount.container_path), rel))
    return found


def nested_mount_problem(mounts: Sequence[nc.Mount], index: int) -> str | None:
    """Why mount ``index`` cannot be made (its destination runs through a link in an earlier
    mount's host folder), or None."""
    mount = mounts[index]
    covering = _covering(mounts[:index], posixpath.normpath(mount.container_path))
    if covering is None or not covering[1]:
        return None
    outer, rel = covering
    state, _ = _walk(outer.host_path, rel)
    if state == "link":
        return (
            f"mount {mount.container_path} left out: its place in {outer.host_path} "
            "runs through a symbolic link"
        )
    if state == "missing" or (state == "missing-last" and outer.readonly):
        return (
            f"mount {mount.container_path} left out: {outer.host_path / rel} does not exist "
            f"and {outer.container_path} is read-only"
        )
    return None


def placements(
    mounts: Sequence[nc.Mount], masks: Sequence[nc.Mask]
) -> tuple[list[Placement], list[str]]:
    """Where each mask is applied, and notes about masks left out."""
    done: list[Placement] = []
    notes: list[str] = []
    seen: set[str] = set()

    def place(path: str, mask: nc.Mask, folder: bool) -> None:
        if path not in seen:
            seen.add(path)
            done.append(Placement(container_path=path, mask=mask, folder=folder))

    for mask in masks:
        path = posixpath.normpath(mask.container_path)
        covering = _covering(mounts, path)
        if covering is None or not covering[1]:
            notes.append(f"mask {path} left out: it is not inside a mount")
            continue
        mount, rel = covering
        state, st = _walk(mount.host_path, rel)
        if state == "ok" and st is not None:
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_dir and mask.source is not None:
                notes.append(f"mask {path} left out: a folder is there, not a file")
                continue
            place(path, mask, is_dir)
        elif state == "missing-last" and not mount.readonly:
            place(path, mask, mask.folder)  # bwrap creates it, then mounts over it
        elif state == "link":
            real = Path(os.path.realpath(mount.host_path / rel))
            try:
                real_st = os.stat(real)
            except OSError:
                continue  # leads nowhere: nothing to show, nothing to hide
            is_dir = stat.S_ISDIR(real_st.st_mode)
            if is_dir and mask.source is not None:
                notes.append(f"mask {path} left out: it leads to a folder, not a file")
                continue
            for view in _views(mounts, real):
                place(view, mask, is_dir)
    return done, notes
