"""How the contract's mounts become ``tart run --dir`` shares, and where the guest sees them.

A macOS guest mounts every share of the default tag under one folder,
``/Volumes/My Shared Files/<name>``; the contract's ``/workspace/...`` paths
cannot be created there (the guest's root volume is read-only), so the agent is
told where each one is through environment variables instead (see
:func:`guest_env`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from attrs import define

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import Mount

GROUP_PATH = "/workspace/group"

# Well-known contract paths: (share name, environment variable naming its guest path).
_KNOWN = {
    "/workspace/group": ("group", "NANOCLAW_GROUP_DIR"),
    "/workspace/global": ("global", "NANOCLAW_GLOBAL_DIR"),
    "/workspace/project": ("project", "NANOCLAW_PROJECT_DIR"),
    "/workspace/ipc": ("ipc", "NANOCLAW_IPC_DIR"),
    "/home/node/.claude": ("claude", "CLAUDE_CONFIG_DIR"),
}


@define(frozen=True, kw_only=True)
class Share:
    """One mount as a tart directory share."""

    name: str
    mount: Mount
    guest_path: str

    def dir_arg(self) -> str:
        """The value of ``tart run --dir``: ``name:path`` plus ``:ro`` when read-only."""
        return f"{self.name}:{self.mount.host_path}" + (":ro" if self.mount.readonly else "")


def _share_name(container_path: str) -> str:
    known = _KNOWN.get(container_path.rstrip("/"))
    if known:
        return known[0]
    tail = container_path.strip("/").removeprefix("workspace/")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", tail).strip("-.") or "share"


def plan_shares(mounts: Sequence[Mount], shares_root: str) -> list[Share]:
    """One share per mount, with unique names; refuses host paths tart cannot share."""
    shares: list[Share] = []
    used: set[str] = set()
    for mount in mounts:
        host = str(mount.host_path)
        # tart splits --dir on ":" and reads a last ","-list as options (ro, tag=...).
        if ":" in host or "," in host:
            raise UserError(
                f"tart cannot share {host} (for {mount.container_path}): its path contains "
                f"':' or ',', which `tart run --dir` reads as separators; rename the folder "
                f"or remove that mount from the group's additionalMounts"
            )
        base = _share_name(mount.container_path)
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        shares.append(Share(name=name, mount=mount, guest_path=f"{shares_root}/{name}"))
    return shares


def workdir(shares: Sequence[Share], shares_root: str) -> str:
    """The guest folder the agent starts in: the group workspace's share."""
    for share in shares:
        if share.mount.container_path.rstrip("/") == GROUP_PATH:
            return share.guest_path
    return shares_root


def guest_env(shares: Sequence[Share], shares_root: str) -> dict[str, str]:
    """Environment variables telling the agent where each contract path is in the guest.

    ``NANOCLAW_MOUNTS`` maps every contract path to its guest path (JSON); the
    well-known ones also get a variable of their own (``NANOCLAW_GROUP_DIR``,
    ``CLAUDE_CONFIG_DIR``, ...).
    """
    env = {
        "NANOCLAW_SHARES_ROOT": shares_root,
        "NANOCLAW_MOUNTS": json.dumps(
            {s.mount.container_path: s.guest_path for s in shares}, sort_keys=True
        ),
    }
    for share in shares:
        known = _KNOWN.get(share.mount.container_path.rstrip("/"))
        if known:
            env[known[1]] = share.guest_path
    return env
