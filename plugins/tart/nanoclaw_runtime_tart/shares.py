"""The contract's mounts as ``tart run --dir`` shares, and where a macOS guest sees them.

A macOS guest automounts every share of the default tag under
``/Volumes/My Shared Files/<name>``. The contract's ``/workspace/...`` paths cannot be
made there (the guest's system volume is read-only), so the agent learns where each
one is from environment variables (:func:`guest_env`) and starts in its workspace.

tart parses ``--dir`` as ``[name:]path[:options]``: the options come from the last
``:``-segment when it names ``ro`` or ``tag=``, the name from before the first
``:``. Every share is written ``name:path:[ro,]tag=<automount tag>`` so the last
segment is always ours and a ``,`` in a path is never read as an option; a path with
a ``:`` is refused (Swift's split drops empty pieces, so it cannot be passed through
safely). A single file (a ``file`` mount) cannot be shared: it is copied into a
read-only folder of the run.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import nanoclaw_runtimes_core as nc

from .settings import GUEST_SHARES

AUTOMOUNT_TAG = "com.apple.virtio-fs.automount"
GROUP_PATH = "/workspace/group"
AGENT_SHARE = "nanoclaw-agent"
FILES_SHARE = "nanoclaw-files"

# Contract path -> (share name, variable naming its guest path).
_KNOWN = {
    "/workspace/group": ("group", "NANOCLAW_GROUP_DIR"),
    "/workspace/global": ("global", "NANOCLAW_GLOBAL_DIR"),
    "/workspace/project": ("project", "NANOCLAW_PROJECT_DIR"),
    "/workspace/ipc": ("ipc", "NANOCLAW_IPC_DIR"),
    "/home/node/.claude": ("claude", "CLAUDE_CONFIG_DIR"),
    "/workspace/project/store": ("store", "NANOCLAW_STORE_DIR"),
    "/app/src": ("app-src", "NANOCLAW_AGENT_SRC_DIR"),
}


class Share(nc.Record):
    """One folder shared with the guest."""

    name: str
    host_path: Path
    readonly: bool
    container_path: str
    """The contract path it stands for ("" for the runtime's own shares)."""

    @property
    def guest_path(self) -> str:
        return f"{GUEST_SHARES}/{self.name}"

    def dir_arg(self) -> str:
        """The value of ``tart run --dir``."""
        options = ("ro," if self.readonly else "") + f"tag={AUTOMOUNT_TAG}"
        return f"{self.name}:{self.host_path}:{options}"


class SharePlan(nc.Record):
    """The shares of one run, and the guest path of every contract path."""

    shares: tuple[Share, ...]
    guest_paths: dict[str, str]
    copies: tuple[tuple[Path, Path], ...] = ()
    """(host file, copy in the run folder) for single-file mounts."""

    @property
    def workdir(self) -> str:
        """Where the agent starts: the group workspace's share."""
        return self.guest_paths.get(GROUP_PATH, GUEST_SHARES)

    def dir_args(self) -> tuple[str, ...]:
        return tuple(s.dir_arg() for s in self.shares)


def _name_for(container_path: str) -> str:
    known = _KNOWN.get(container_path.rstrip("/"))
    if known:
        return known[0]
    tail = container_path.strip("/").removeprefix("workspace/")
    return re.sub(r"[^a-z0-9_.-]+", "-", tail.lower()).strip("-.") or "share"


def _check_path(path: Path, what: str) -> None:
    if ":" in str(path) or any(ord(c) < 32 for c in str(path)):
        raise nc.UserError(
            f"tart cannot share {path} ({what}): its path contains ':' or a control character, "
            "which `tart run --dir` cannot take; rename the folder or remove that mount from "
            "the group's additionalMounts"
        )


def plan_shares(
    mounts: Sequence[nc.Mount], *, agent_dir: Path | None, run_folder: Path | None
) -> SharePlan:
    """One share per folder mount (unique names), one read-only share for the copies of
    single-file mounts (in ``run_folder``), and the example agent's folder when given."""
    shares: list[Share] = []
    guest: dict[str, str] = {}
    copies: list[tuple[Path, Path]] = []
    used = {AGENT_SHARE, FILES_SHARE}
    for mount in mounts:
        if mount.is_file:
            if run_folder is None:
                raise nc.UserError(f"tart cannot share the single file {mount.host_path}")
            dest = run_folder / FILES_SHARE / str(len(copies)) / mount.host_path.name
            copies.append((mount.host_path, dest))
            guest[mount.container_path] = (
                f"{GUEST_SHARES}/{FILES_SHARE}/{len(copies) - 1}/{mount.host_path.name}"
            )
            continue
        _check_path(mount.host_path, mount.container_path)
        base = _name_for(mount.container_path)
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        share = Share(
            name=name,
            host_path=mount.host_path,
            readonly=mount.readonly,
            container_path=mount.container_path,
        )
        shares.append(share)
        guest[mount.container_path] = share.guest_path
    if copies:
        assert run_folder is not None
        _check_path(run_folder, "the run's folder")
        shares.append(
            Share(
                name=FILES_SHARE,
                host_path=run_folder / FILES_SHARE,
                readonly=True,
                container_path="",
            )
        )
    if agent_dir is not None:
        _check_path(agent_dir, "the example agent")
        shares.append(
            Share(name=AGENT_SHARE, host_path=agent_dir, readonly=True, container_path="")
        )
    return SharePlan(shares=tuple(shares), guest_paths=guest, copies=tuple(copies))


def make_copies(plan: SharePlan) -> None:
    """Copy the single-file mounts into the run folder, read-only (never following a link)."""
    for source, dest in plan.copies:
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(source, dest, follow_symlinks=False)
        dest.chmod(0o444)


def guest_env(plan: SharePlan) -> dict[str, str]:
    """Variables telling the agent where each contract path is in the guest.

    ``NANOCLAW_MOUNTS`` maps every contract path to its guest path (JSON); the
    well-known ones also get a variable of their own (``NANOCLAW_GROUP_DIR``,
    ``CLAUDE_CONFIG_DIR``, ...)."""
    env = {
        "NANOCLAW_SHARES_ROOT": GUEST_SHARES,
        "NANOCLAW_MOUNTS": json.dumps(plan.guest_paths, sort_keys=True),
    }
    for container, path in plan.guest_paths.items():
        known = _KNOWN.get(container.rstrip("/"))
        if known:
            env[known[1]] = path
    return env
