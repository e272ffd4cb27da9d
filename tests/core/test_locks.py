"""The one lock implementation: exclusive locks, slots, owner locks that die with their owner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.locks import LockTimeout, SlotPool


def test_a_lock_keeps_a_second_holder_out_even_in_the_same_thread(tmp_path: Path) -> None:
    first = nc.FileLock(tmp_path / "group.lock").acquire()
    with pytest.raises(LockTimeout, match="is held by another process"):
        nc.FileLock(tmp_path / "group.lock").acquire(timeout=0.1)
    first.release()
    with nc.FileLock(tmp_path / "group.lock") as again:
        assert again.held


def test_slots_bound_how_many_hold_at_once(tmp_path: Path) -> None:
    pool = SlotPool(tmp_path, 2)
    a, b = pool.try_acquire(), pool.try_acquire()
    assert a is not None and b is not None and pool.try_acquire() is None
    with (
        pytest.raises(TimeoutError, match="no free slot of 2"),
        pool.slot(timeout_s=0.2, poll_s=0.05),
    ):
        pass
    a.release()
    with pool.slot(timeout_s=1) as index:
        assert index in (0, 1)
    b.release()


def test_an_owner_lock_dies_with_its_owner(tmp_path: Path) -> None:
    lock = tmp_path / ".owner"
    code = (
        "import sys, time; from pathlib import Path; from nanoclaw_runtimes_core.locks import "
        "OwnerLock; OwnerLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert nc.owner_alive(lock)
    finally:
        proc.kill()
        proc.wait()
    assert not nc.owner_alive(lock)
    assert not nc.owner_alive(tmp_path / "missing")
