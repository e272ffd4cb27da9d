"""The pre-booted spare VM (``TART_SPARE``): one clean, never-used VM kept booted ahead.

After a run of a group that asks for it, a small detached process (the *reaper*,
:mod:`.reaper`) clones and boots a VM with exactly the shares, size and base that
group's next run needs, then waits. The next run of the group *claims* it (takes its
claim lock), runs in it, and deletes it like any run's VM: still one VM per run.
A spare nobody claimed is deleted by its reaper at its idle end; if the reaper
dies, the VM has no live owner and the next run, stats or reset sweeps it.

At most one spare exists per user (the reaper holds ``spare.lock``), inside the VM
slots, and a run that needs a slot never waits for a spare: it deletes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import owners
from .tartcli import Tart
from .vm import Cleanup, VMSpec, acquire_slot, remove_claimed, remove_vm

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.locks import SlotPool

SPARE_LOCK = "spare.lock"


def spare_key(tart: Tart, spec: VMSpec, tart_home: str) -> str:
    """What a spare must match to serve a run: the tool, its home, base, size and shares."""
    data = json.dumps(
        [
            tart.executable,
            tart_home,
            spec.base_image,
            spec.cpus,
            spec.ram_mb,
            list(spec.dir_args),
            spec.workdir,
        ]
    )
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def live_spares(records: owners.Records) -> list[owners.Record]:
    """Spares whose reaper is alive and that no run has claimed."""
    return [
        r
        for r in records.mine()
        if r.kind == "spare"
        and owners.is_held(records.path(r.name))
        and not owners.is_held(records.path(r.name, owners.CLAIM))
    ]


def evict(
    tart: Tart,
    records: owners.Records,
    *,
    stop_timeout_s: int,
    which: Callable[[owners.Record], bool] = lambda r: True,
) -> list[str]:
    """Delete the live, unclaimed spares ``which`` selects; one line per spare deleted."""
    removed = []
    for record in live_spares(records):
        if not which(record):
            continue
        if remove_claimed(tart, records, record.name, stop_timeout_s=stop_timeout_s):
            removed.append(f"deleted the spare VM {record.name} (group {record.group})")
    return removed


def take(
    records: owners.Records, key: str, *, wait_s: float, notify: Callable[[str], None]
) -> tuple[str, int] | None:
    """Claim a spare made for ``key``, waiting up to ``wait_s`` for one still booting; returns
    (VM name, claim fd) or None."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        candidates = [r for r in live_spares(records) if r.data.get("key") == key]
        if not candidates:
            return None
        record = candidates[0]
        if records.path(record.name, owners.READY).exists():
            fd = records.claim(record.name)
            if fd is None:
                return None
            if owners.is_held(records.path(record.name)) or records.exists(record.name):
                return record.name, fd
            owners.release_fd(fd)
            return None
        if time.monotonic() >= deadline:
            return None
        if not told:
            notify(f"waiting for the spare VM {record.name}, which is still booting")
            told = True
        time.sleep(0.1)


@contextlib.contextmanager
def claimed_vm(
    tart: Tart,
    records: owners.Records,
    name: str,
    claim_fd: int,
    *,
    pool: SlotPool,
    stop_timeout_s: int,
    notify: Callable[[str], None],
    wait_s: float,
) -> Iterator[str]:
    """Use the claimed spare ``name`` for one run, then delete it, however the block ends.
    Its reaper gives up its VM slot within a moment of the claim; the run takes it."""
    cleanup = Cleanup(notify)
    slot = None
    try:
        slot = acquire_slot(
            pool, notify=notify, evict=lambda: False, deadline=time.monotonic() + wait_s
        )
        yield name
    finally:
        deleted = cleanup.step(
            f"deleting VM {name}", lambda: remove_vm(tart, name, stop_timeout_s=stop_timeout_s)
        )
        if slot is not None:
            slot.release()
        if deleted:
            owners.remove_files(records.folder, name)
        owners.release_fd(claim_fd)
        cleanup.reraise()


def spawn_reaper(payload: dict[str, Any], env: dict[str, str], state: Path) -> None:
    """Start the reaper, detached (its own session, no terminal, surviving this process); the
    payload, which may hold tart's registry credentials, goes on its stdin."""
    log = open(state / "reaper.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        if log.tell() > 1 << 20:
            log.truncate(0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nanoclaw_runtime_tart.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    finally:
        log.close()
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(json.dumps(payload).encode())
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    # Reap it if it ends while this process lives, so no zombie stays.
    threading.Thread(target=proc.wait, daemon=True).start()


def spare_rows(records: owners.Records, runtime: str) -> list[nc.StatsRow]:
    """A ``spare-vm`` stats row for each live spare (ready or booting)."""
    rows = []
    now = time.time()
    for record in live_spares(records):
        ready = records.path(record.name, owners.READY).exists()
        idle_until = float(record.data.get("idleUntil") or 0)
        left = max(0.0, idle_until - now) if ready else None
        rows.append(
            nc.StatsRow(
                runtime=runtime,
                group=record.group or None,
                kind="spare-vm",
                path=record.name,
                note=(
                    f"spare VM booted, never used; deleted in {left:.0f} s unless a run takes it"
                    if ready
                    else "spare VM booting"
                ),
                details={
                    "pid": record.pid,
                    "ageSeconds": round(now - record.created, 1),
                    "idleSecondsLeft": round(left, 1) if left is not None else None,
                    "memoryMB": record.data.get("ramMB"),
                    "ready": ready,
                },
            )
        )
    return rows
