"""Names of the VMs this runtime creates, and who owns them.

A VM is named ``nanoclaw-<group>-<run>-pid<host pid>``: the prefix marks it as
ours, the group and run say what it was for, and the pid of the host process
that created it lets a sweep tell a VM of a live run (keep it) from one left by
a crashed run (delete it). Within one process, the VMs of runs in progress are
also kept in a registry, so that a long-lived host does not keep a VM its own
failed cleanup left behind until it exits.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

from attrs import define

PREFIX = "nanoclaw-"
CHECK_GROUP = "_check"  # the throwaway VM of `prepare --base`; no group folder starts with "_"

_NAME = re.compile(
    r"^nanoclaw-(?P<group>[A-Za-z0-9_][A-Za-z0-9_-]{0,63})-(?P<run>[A-Za-z0-9]{1,32})"
    r"-pid(?P<pid>[0-9]{1,10})$"
)

_active: set[str] = set()
_active_lock = threading.Lock()


@define(frozen=True, kw_only=True)
class VMName:
    """The parts of one of our VM names."""

    name: str
    group: str
    run: str
    pid: int


def make_name(group: str, run_id: str = "", *, pid: int | None = None) -> VMName:
    """A fresh VM name for one run of ``group``; ``run_id`` is cleaned to letters and digits."""
    run = re.sub(r"[^A-Za-z0-9]", "", run_id)[:32] or uuid.uuid4().hex[:12]
    owner = os.getpid() if pid is None else pid
    name = f"{PREFIX}{group}-{run}-pid{owner}"
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"cannot build a VM name from group {group!r} and run {run_id!r}")
    return parsed


def parse_name(name: str) -> VMName | None:
    """The parts of ``name`` if it is one of our VM names, else None."""
    match = _NAME.match(name)
    if match is None:
        return None
    return VMName(name=name, group=match["group"], run=match["run"], pid=int(match["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a reused pid errs on the side of keeping)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def register(name: str) -> None:
    """Mark a VM as belonging to a run in progress in this process."""
    with _active_lock:
        _active.add(name)


def unregister(name: str) -> None:
    """The run that owned this VM has finished (its cleanup ran)."""
    with _active_lock:
        _active.discard(name)


def is_leftover(vm: VMName) -> bool:
    """True when no live run owns ``vm``: its host process is gone, or it is this process
    and no run in progress here claims it."""
    if vm.pid == os.getpid():
        with _active_lock:
            return vm.name not in _active
    return not pid_alive(vm.pid)
