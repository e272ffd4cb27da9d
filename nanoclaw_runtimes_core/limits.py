"""CPU, memory and process limits for sandboxes that run as host processes, without systemd.

In order of preference:

1. cgroup v2, as root (``/sys/fs/cgroup`` is cgroup2): a cgroup per run under
   ``nanoclaw-runtimes/`` with ``cpu.max``, ``memory.max``, ``pids.max``;
2. cgroup v1, as root: the same in the ``cpu``, ``memory`` and ``pids`` hierarchies;
3. otherwise only the process count, as an ``RLIMIT_NPROC`` of the dedicated
   sandbox user (a floor: it counts every sandbox of that user).

The sandbox joins its cgroups through a tiny ``sh`` prefix before anything of
it runs. What cannot be enforced is said in :attr:`LimitPlan.unenforced`; the
dispatcher warns (or, with ``NANOCLAW_LIMITS=strict``, refuses). At the end,
every process left in the run's cgroups is killed and the cgroups removed, so
nothing of a run survives it even if it left its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .models import Limits
from .record import Record, field

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "nanoclaw-runtimes"
PERIOD_US = 100_000
KILL_WAIT_S = 0.5
"""How long :meth:`LimitPlan.kill_and_remove` keeps killing what is left in a cgroup."""
JOIN_SCRIPT = (
    'for f; do [ "$f" = -- ] && break; echo {who} > "$f" || exit 125; shift; done; shift; exec "$@"'
)
"""The prefix's script; ``{who}`` is what it writes into each file. On cgroup v1 it writes 0
(itself) into each ``tasks`` file: moving the calling thread alone skips the kernel's global
lock, whose RCU grace period made each run wait 10-20 ms; ``sh`` has one thread, so the
process is moved whole. On v2 it writes its pid into ``cgroup.procs``."""


class LimitPlan(Record, frozen=False, kw_only=False):
    """How one run's limits are applied: an argv prefix, the cgroups to clean up, what is
    enforced and what is not."""

    prefix: list[str] = field(factory=list)
    cgroups: list[Path] = field(factory=list)
    enforced: list[str] = field(factory=list)
    unenforced: list[str] = field(factory=list)
    nproc: int | None = None

    def kill_and_remove(self) -> None:
        """Kill whatever is left in the run's cgroups, then remove them."""
        for cg in self.cgroups:
            deadline = time.monotonic() + KILL_WAIT_S
            pause = 0.0005  # processes of a run that just ended are usually gone within 1 ms
            while True:
                pids = _pids(cg)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
            with contextlib.suppress(OSError):
                cg.rmdir()
        self.cgroups = []


def _pids(cg: Path) -> list[int]:
    try:
        return [int(p) for p in (cg / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False


SWEEP_AGE_S = 60.0
"""A cgroup younger than this may belong to a run that has not joined it yet."""


def _sweep(parent: Path) -> None:
    """Remove empty cgroups of earlier runs (a cgroup with processes refuses rmdir); a fresh
    one is left alone, as a concurrent run may be about to join it."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime < SWEEP_AGE_S:
                        continue
                    os.rmdir(entry.path)


def _v2(run: str, limits: Limits, plan: LimitPlan) -> bool:
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return False
    parent = CGROUP_ROOT / PARENT
    with contextlib.suppress(FileExistsError, OSError):
        parent.mkdir()
    if not parent.is_dir():
        return False
    available = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    wanted = [c for c in ("cpu", "memory", "pids") if c in available]
    _write(CGROUP_ROOT / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    _sweep(parent)
    cg = parent / run
    try:
        cg.mkdir()
    except OSError:
        return False
    plan.cgroups.append(cg)
    join = JOIN_SCRIPT.format(who="$$")
    plan.prefix = ["/bin/sh", "-c", join, "nanoclaw-limits", str(cg / "cgroup.procs"), "--"]
    if limits.cpus is not None and _write(
        cg / "cpu.max", f"{int(limits.cpus * PERIOD_US)} {PERIOD_US}"
    ):
        plan.enforced.append(f"cpus {limits.cpus:g} (cgroup v2)")
    if limits.memory_mb is not None and _write(cg / "memory.max", str(limits.memory_mb * 2**20)):
        _write(cg / "memory.swap.max", "0")
        plan.enforced.append(f"memory {limits.memory_mb} MB (cgroup v2)")
    if limits.pids is not None and _write(cg / "pids.max", str(limits.pids)):
        plan.enforced.append(f"{limits.pids} processes (cgroup v2)")
    return True


def _v1(run: str, limits: Limits, plan: LimitPlan) -> bool:
    wanted = {
        "cpu": limits.cpus is not None,
        "memory": limits.memory_mb is not None,
        "pids": limits.pids is not None,
    }
    joined: list[str] = []
    for controller, needed in wanted.items():
        base = CGROUP_ROOT / controller
        if not needed or not (base / "cgroup.procs").exists():
            continue
        parent = base / PARENT
        with contextlib.suppress(FileExistsError, OSError):
            parent.mkdir()
        _sweep(parent)
        cg = parent / run
        try:
            cg.mkdir()
        except OSError:
            continue
        plan.cgroups.append(cg)
        ok = False
        if controller == "cpu" and limits.cpus is not None:
            ok = _write(cg / "cpu.cfs_period_us", str(PERIOD_US)) and _write(
                cg / "cpu.cfs_quota_us", str(int(limits.cpus * PERIOD_US))
            )
            what = f"cpus {limits.cpus:g} (cgroup v1)"
        elif controller == "memory" and limits.memory_mb is not None:
            ok = _write(cg / "memory.limit_in_bytes", str(limits.memory_mb * 2**20))
            _write(cg / "memory.memsw.limit_in_bytes", str(limits.memory_mb * 2**20))
            what = f"memory {limits.memory_mb} MB (cgroup v1)"
        else:
            ok = _write(cg / "pids.max", str(limits.pids))
            what = f"{limits.pids} processes (cgroup v1)"
        if ok:
            plan.enforced.append(what)
            joined.append(str(cg / "tasks"))
    if not joined:
        return False
    plan.prefix = ["/bin/sh", "-c", JOIN_SCRIPT.format(who="0"), "nanoclaw-limits", *joined, "--"]
    return True


def plan_limits(run: str, limits: Limits, *, dedicated_user: bool) -> LimitPlan:
    """Set up the limits of run ``run`` (a name unique on this host)."""
    plan = LimitPlan()
    wanted = {
        "cpus": limits.cpus is not None,
        "memory": limits.memory_mb is not None,
        "processes": limits.pids is not None,
    }
    if not any(wanted.values()):
        return plan
    if (
        os.geteuid() == 0
        and CGROUP_ROOT.is_dir()
        and (_v2(run, limits, plan) or _v1(run, limits, plan))
    ):
        pass
    elif limits.pids is not None and dedicated_user:
        plan.nproc = limits.pids
        plan.enforced.append(f"{limits.pids} processes of the sandbox user (RLIMIT_NPROC)")
    done = " ".join(plan.enforced)
    for what, needed in wanted.items():
        word = {"cpus": "cpus", "memory": "memory", "processes": "processes"}[what]
        if needed and word not in done:
            plan.unenforced.append(what)
    return plan


def unenforced_message(unenforced: list[str]) -> str:
    """The warning for limits that cannot be enforced here."""
    return (
        f"the {', '.join(unenforced)} "
        f"limit{'s are' if len(unenforced) > 1 else ' is'} not enforced "
        "on this host (cgroups are set up only when nanoclaw-runtimes runs as root); "
        "set NANOCLAW_LIMITS=strict to refuse such runs"
    )
