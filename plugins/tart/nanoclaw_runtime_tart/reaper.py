"""The spare VM's reaper: ``python -m nanoclaw_runtime_tart.reaper`` with a JSON payload on stdin.

It makes the spare (clone, size, boot with the group's shares), marks it ready, and
waits: if a run claims it, the reaper leaves at once (the run owns the VM now);
at the idle end it claims the spare itself and deletes it. It owns the VM (holds
its record's lock) from before the clone until it leaves, so a reaper killed
any way leaves a VM the next sweep recognises and removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import owners
from .spare import SPARE_LOCK
from .tartcli import Tart, TartError
from .vm import Cleanup, RunProcess, VMError, VMSpec, boot, fresh_name, remove_vm

POLL_S = 0.25


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} reaper {os.getpid()}: {message}", file=sys.stderr)


def _wait_lock(path: Path, wait_s: float) -> int | None:
    deadline = time.monotonic() + wait_s
    while (fd := owners.try_lock(path)) is None:
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    return fd


def run(payload: dict[str, Any]) -> int:
    """Make, keep and reap one spare VM; see the module docstring."""
    from nanoclaw_runtimes_core.locks import SlotPool

    state = Path(payload["state"])
    single = _wait_lock(state / SPARE_LOCK, 5.0)
    if single is None:
        return 0  # another spare exists
    tart = Tart(payload["executable"], payload["env"])
    records = owners.Records(state, Path(payload["tartHome"]))
    slot = SlotPool(state / "slots", int(payload["maxRunning"]), name="vm").try_acquire()
    if slot is None:
        _log("no free VM slot: no spare")
        return 0
    spec = VMSpec(**payload["spec"])
    stem = re.sub(r"[^a-z0-9]+", "-", str(payload["group"]).lower()).strip("-")[:32] or "group"
    name = fresh_name(
        f"spare-{stem}-{uuid.uuid4().hex[:8]}", {v.name for v in tart.local_vms()}, records
    )
    owned = records.create(
        name,
        kind="spare",
        group=str(payload["group"]),
        project=str(payload["project"]),
        key=payload["key"],
        ramMB=spec.ram_mb,
    )
    cleanup = Cleanup(_log)
    runs: list[RunProcess] = []
    taken = False
    try:
        tart.clone(spec.base_image, name)
        owned.update(phase="created")
        tart.set(name, cpus=spec.cpus, ram_mb=spec.ram_mb)
        took = boot(
            tart,
            name,
            spec,
            log=records.path(name, owners.RUN_LOG),
            on_started=runs.append,
            on_limit=lambda message: False,
            limit_deadline=time.monotonic(),
        )
        now = time.time()
        idle_until = now + float(payload["idleS"])
        owned.update(data={"readyAt": now, "idleUntil": idle_until, "bootSeconds": took})
        records.path(name, owners.READY).touch(mode=0o600)
        _log(f"spare {name} ready after {took:.1f} s")
        claim = records.path(name, owners.CLAIM)
        while time.time() < idle_until and not runs[-1].ended():
            if owners.is_held(claim):
                taken = True
                break
            time.sleep(POLL_S)
    except (VMError, TartError, OSError) as exc:
        _log(f"spare {name} failed: {exc}")
    finally:
        # Whoever holds the claim lock owns the VM: a run that took it, or the reaper itself.
        mine = None if taken else records.claim(name, attempts=25)
        if mine is None:
            _log(f"spare {name} taken by a run")
            owned.release(remove=False)
        else:
            deleted = cleanup.step(
                f"deleting {name}",
                lambda: remove_vm(tart, name, stop_timeout_s=spec.stop_timeout_s),
            )
            for proc in runs:
                cleanup.step("ending tart run", lambda p=proc: p.reap(5.0))  # type: ignore[misc]
            _log(f"spare {name} deleted" if deleted else f"spare {name} left for the sweep")
            owned.release(remove=deleted)
            owners.release_fd(mine)
        slot.release()
        owners.release_fd(single)
    return 0


def main() -> int:
    """Read the payload from stdin and run; never raises."""
    import json

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        payload = json.loads(sys.stdin.buffer.read())
        os.close(0)
        return run(payload)
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # a reaper must never leave a traceback on a terminal
        with contextlib.suppress(Exception):
            _log(f"failed: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
