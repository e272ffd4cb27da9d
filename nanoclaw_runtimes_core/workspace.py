"""Materialising a plan, under the group's lock: the folders the mounts need, their owner,
and the files the masks show.

The mount folders themselves (``groups/{folder}``, ``data/ipc/{folder}``, ...)
are the project's, created as the user laid the project out. What lies inside
them belongs to the sandbox: the folders the host makes there (``messages``,
``tasks``, ``input`` of the IPC folder) go through
:class:`~nanoclaw_runtimes_core.safefs.SafeDir`, so an entry a sandbox planted
in their place (a link to ``/etc``, a file, a FIFO) is moved aside and
reported, and the run goes on. The read-write folders belong to the sandbox
user; a folder made by another user before is handed over once, entry by
entry, without following links.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .models import SandboxUser
from .mounts import IPC_SUBFOLDERS
from .plan import CONFIG_MASK_NAME, GroupPlan
from .safefs import Repair, SafeDir

_OWNED_KINDS = ("group", "global", "sessions", "ipc", "agent-src", "store")


def _adopt(top: Path, owner: tuple[int, int]) -> None:
    """Give everything under ``top`` to ``owner``; links are changed as links, never followed."""
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(folder, name), *owner)


def _own(path: Path, owner: tuple[int, int] | None, *, adopt: bool, notes: list[str]) -> None:
    """Make ``path`` (a folder) exist and belong to ``owner``."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is None:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) == owner:
            return
        try:
            if adopt and os.geteuid() == 0:
                _adopt(path, owner)
            os.fchown(fd, *owner)
        except PermissionError:
            notes.append(
                f"{path} belongs to uid {st.st_uid}; the sandbox (uid {owner[0]}) may not be "
                "able to write it"
            )
    finally:
        os.close(fd)


def materialise(plan: GroupPlan[object], user: SandboxUser) -> list[str]:
    """Create what the plan's mounts and masks need; returns what the user should be told
    (planted entries moved aside, ownership that could not be given)."""
    repairs: list[Repair] = []
    notes: list[str] = []
    owner = (user.uid, user.gid) if os.geteuid() == 0 else None
    for mount in plan.mounts.mounts:
        if mount.kind not in _OWNED_KINDS:
            continue
        # groups/global belongs to the sandbox user too: the main group writes it.
        wanted = owner if (not mount.readonly or mount.kind == "global") else None
        _own(mount.host_path, wanted, adopt=mount.kind in ("group", "sessions", "ipc"), notes=notes)
        if mount.kind == "ipc":
            with SafeDir.open(mount.host_path) as ipc:
                for sub in IPC_SUBFOLDERS:
                    ipc.child(sub, owner=owner, repairs=repairs).close()
    _write_masks(plan)
    return [str(r) for r in repairs] + notes


def _write_masks(plan: GroupPlan[object]) -> None:
    """The files masks show: the trusted config, in the run's private folder."""
    for mask in plan.mounts.masks:
        if (
            mask.source is not None
            and mask.source.name == CONFIG_MASK_NAME
            and plan.config.data is not None
            and mask.source.parent.is_dir()  # the run's own folder: none outside a run (prepare)
        ):
            with SafeDir.open(mask.source.parent) as folder:
                folder.replace_file(mask.source.name, plan.config.data, mode=0o644)
