"""Group locks and run slots across real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from nanoclaw_runtimes_core.locks import SlotPool, group_lock
from nanoclaw_runtimes_core.models import Project

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nanoclaw_runtimes_core.locks import SlotPool
    pool = SlotPool(Path(sys.argv[1]), int(sys.argv[2]), name="t")
    log = Path(sys.argv[3])
    with pool.slot(poll_s=0.02):
        with log.open("a") as fh:
            fh.write(f"start {time.monotonic()}\\n")
        time.sleep(0.4)
        with log.open("a") as fh:
            fh.write(f"end {time.monotonic()}\\n")
    """
)


def max_overlap(log: Path) -> int:
    events = sorted(
        (float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    return peak


def test_slot_pool_bounds_concurrency_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "locks"), "2", str(log)])
        for _ in range(5)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(log.read_text().splitlines()) == 10
    assert max_overlap(log) == 2


def test_slot_is_freed_when_its_holder_dies(tmp_path: Path) -> None:
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from nanoclaw_runtimes_core.locks import SlotPool\n"
        "pool = SlotPool(Path(sys.argv[1]), 1)\n"
        "with pool.slot():\n    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    pool = SlotPool(tmp_path, 1)
    assert pool.try_acquire() is None
    proc.kill()
    proc.wait()
    waited: list[bool] = []
    with pool.slot(timeout_s=10, on_wait=lambda: waited.append(True)):
        pass


def test_slot_wait_times_out_with_a_message(tmp_path: Path) -> None:
    pool = SlotPool(tmp_path, 1)
    held = pool.try_acquire()
    assert held is not None
    started = time.monotonic()
    try:
        SlotPool(tmp_path, 1).slot(timeout_s=0.3).__enter__()
    except TimeoutError as exc:
        assert "no free slot of 1" in str(exc)
    else:
        raise AssertionError("expected a timeout")
    assert time.monotonic() - started < 5
    held.release()


def test_group_locks_are_per_group(tmp_path: Path) -> None:
    project = Project(root=tmp_path)
    a, a_again, b = group_lock(project, "a"), group_lock(project, "a"), group_lock(project, "b")
    with a:
        with b:
            pass  # another group is independent
        assert (tmp_path / "data" / "locks" / "group-a.lock").exists()
        try:
            a_again.acquire(timeout=0.1)
        except TimeoutError:
            pass
        else:
            raise AssertionError("a second holder of group a's lock")
