"""CPU and memory limits for a bubblewrap sandbox, where the host can enforce them.

bubblewrap itself limits nothing. The one mechanism used is a transient systemd
scope (``systemd-run --scope -p MemoryMax=… -p CPUQuota=…``), a cgroup v2 with a
hard memory cap and a CPU quota, and only when a probe proves it works here
(systemd is the init system and the caller may create scopes: root, or a user
session with delegation). Otherwise no limit is applied, and ``status`` says so.

``prlimit`` is deliberately not used: its address-space limit (RLIMIT_AS) breaks
programs that reserve large virtual ranges (Node's V8, the JVM) long before they
use the memory, and it cannot cap CPU at all.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from . import probe_cache
from .cli import run_tool

SYSTEMD_MARKER = Path("/run/systemd/system")


@functools.lru_cache(maxsize=4)
def systemd_scope_prefix_base(systemd_run: str | None, is_root: bool) -> tuple[str, ...] | None:
    """``systemd-run`` arguments creating a scope, or None when scopes cannot be made here."""
    if systemd_run is None or not SYSTEMD_MARKER.is_dir():
        return None
    base = (systemd_run, "--scope", "--quiet", "--collect") + (() if is_root else ("--user",))

    def trial() -> dict[str, bool]:
        true = shutil.which("true") or "/bin/true"
        probe = run_tool(
            [*base, "-p", "MemoryMax=64M", "-p", "CPUQuota=100%", "--", true], timeout_s=10
        )
        return {"works": probe.ok}

    key = {**probe_cache.host_key(systemd_run), "base": list(base)}
    return base if probe_cache.cached("systemd-scope-probe", key, trial)["works"] else None


def limit_prefix(cpus: int, ram_mb: int) -> list[str]:
    """Arguments to put before ``bwrap`` to enforce the limits, or [] when none can be."""
    base = systemd_scope_prefix_base(shutil.which("systemd-run"), os.geteuid() == 0)
    if base is None:
        return []
    return [*base, "-p", f"MemoryMax={ram_mb}M", "-p", f"CPUQuota={cpus * 100}%", "--"]


def limits_description() -> str:
    """What is enforced on this host, in a few words."""
    base = systemd_scope_prefix_base(shutil.which("systemd-run"), os.geteuid() == 0)
    if base is None:
        return "cpu/memory limits not enforced (no usable systemd scope)"
    return "cpu/memory limits enforced by a systemd scope"
