"""Finding and removing what killed runs and dead spare reapers left behind.

Only VMs with a record of ours (:mod:`.owners`) whose owner is gone are touched:
every other VM on the machine, whatever its name, is left alone.
"""

from __future__ import annotations

import subprocess
import time

from nanoclaw_runtimes_core.record import Record

from . import owners
from .tartcli import Tart, TartError, VMInfo
from .vm import remove_claimed

CLONE_GRACE_S = 3600.0
"""A record whose owner died while ``tart clone`` ran may still see the clone appear (a pull
outlives its parent): such a record is kept this long before it is dropped."""


class Found(Record):
    """One of our VMs as ``tart list`` and its record show it."""

    record: owners.Record
    vm: VMInfo | None
    alive: bool


def ours(tart: Tart, records: owners.Records, vms: list[VMInfo] | None = None) -> list[Found]:
    """Every VM (or record without a VM yet) of ours in this tart home."""
    listed = {vm.name: vm for vm in (tart.local_vms() if vms is None else vms)}
    return [
        Found(record=r, vm=listed.get(r.name), alive=records.alive(r.name)) for r in records.mine()
    ]


def sweep(
    tart: Tart,
    records: owners.Records,
    *,
    stop_timeout_s: int,
    vms: list[VMInfo] | None = None,
) -> tuple[list[str], list[str]]:
    """Stop and delete our VMs whose owner died; returns (what was removed, problems)."""
    removed: list[str] = []
    problems: list[str] = []
    for found in ours(tart, records, vms):
        record = found.record
        if found.alive:
            continue
        what = "spare VM" if record.kind == "spare" else "VM"
        if found.vm is None:
            if record.phase == "cloning" and time.time() - record.created < CLONE_GRACE_S:
                continue
            owners.remove_files(records.folder, record.name)
            continue
        try:
            if not remove_claimed(tart, records, record.name, stop_timeout_s=stop_timeout_s):
                continue
        except (TartError, subprocess.TimeoutExpired, OSError) as exc:
            problems.append(f"could not remove the leftover {what} {record.name}: {exc}")
            continue
        removed.append(
            f"removed the leftover {what} {record.name} (group {record.group or '-'}; its "
            f"owner, host pid {record.pid}, is gone)"
        )
    return removed, problems
