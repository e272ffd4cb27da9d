"""Finding and removing VMs left behind by crashed runs.

Only VMs whose name parses as ours (:mod:`.vm`) AND whose owner is gone are
touched; every other VM on the machine is left alone.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

from .tartcli import Tart, TartError, VMInfo
from .vm import VMName, is_leftover, parse_name


def leftovers(vms: list[VMInfo], *, group: str | None = None) -> list[tuple[VMInfo, VMName]]:
    """The local VMs of ours no live run owns, optionally only those of one group."""
    found = []
    for info in vms:
        if info.source.lower() != "local":
            continue
        parsed = parse_name(info.name)
        if parsed is None or (group is not None and parsed.group != group):
            continue
        if is_leftover(parsed):
            found.append((info, parsed))
    return found


def remove_vm(tart: Tart, name: str, *, stop_timeout_s: int) -> None:
    """Stop (if running) and delete ``name``; a VM that is already gone is not an error."""
    with contextlib.suppress(TartError):
        # Exit status 2 means "not running" or "missing": both fine here.
        tart.stop(name, timeout_s=stop_timeout_s)
    delete_vm(tart, name)


def delete_vm(tart: Tart, name: str, *, attempts: int = 20, pause_s: float = 0.5) -> None:
    """``tart delete`` with retries while tart still sees the VM running (its lock is released
    a moment after the VM process ends)."""
    for attempt in range(attempts):
        try:
            tart.delete(name)
            return
        except TartError as exc:
            if exc.missing:
                return
            if not exc.running or attempt == attempts - 1:
                raise
        time.sleep(pause_s)


def sweep(
    tart: Tart, *, stop_timeout_s: int, group: str | None = None, vms: list[VMInfo] | None = None
) -> tuple[list[str], list[str]]:
    """Remove leftover VMs of ours; returns (removed names, problems)."""
    if vms is None:
        vms = tart.list()
    removed: list[str] = []
    problems: list[str] = []
    for info, parsed in leftovers(vms, group=group):
        try:
            remove_vm(tart, info.name, stop_timeout_s=stop_timeout_s)
        except (TartError, subprocess.TimeoutExpired, OSError) as exc:
            problems.append(f"could not remove leftover VM {info.name}: {exc}")
            continue
        removed.append(
            f"leftover VM {info.name} (group {parsed.group}; "
            f"its run, host pid {parsed.pid}, is over)"
        )
    return removed, problems
