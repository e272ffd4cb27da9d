"""Stopping and limiting bubblewrap sandboxes: timeouts, interruptions, a killed CLI, cgroups."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .helpers import (
    TestProject,
    cmdline,
    descendants,
    in_thread,
    live_pids,
    wait_until,
    watchdog,
)

AS_ROOT = os.geteuid() == 0
CLI = [sys.executable, "-m", "nanoclaw_runtimes_core"]
FORKS = (
    "import os, time\n"
    "n = 0\n"
    "for _ in range(200):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        time.sleep(3)\n"
    "        os._exit(0)\n"
    "    n += 1\n"
    "print(n, flush=True)\n"
    "os._exit(0)\n"
)


def alive(pids: list[int]) -> list[int]:
    live = set(live_pids())
    return [p for p in pids if p in live]


def sandbox_processes(marker: bytes) -> list[int]:
    """Live processes (anywhere) whose command line is exactly ``marker``'s words."""
    words = marker.split()
    return [p for p in live_pids() if cmdline(p) == words]


def test_idle_timeout_stops_the_sandbox(project: TestProject) -> None:
    started = time.monotonic()
    result, sink = project.sh("dev", "echo started; exec sleep 1001", timeout_ms=1500)
    assert result.timed_out and result.exit_code is None
    assert sink.text == "started\n"
    assert time.monotonic() - started < 1.5 + 1 + 5
    assert not sandbox_processes(b"sleep 1001")


def test_a_timeout_asks_the_sandbox_to_stop_first(project: TestProject) -> None:
    result, sink = project.sh(
        "dev",
        "trap 'echo got-term; exit 0' TERM; echo started; sleep 1010 & wait",
        timeout_ms=1000,
    )
    assert result.timed_out, sink.err
    assert sink.text == "started\ngot-term\n"
    assert not sandbox_processes(b"sleep 1010")


def test_a_sandbox_ignoring_sigterm_is_killed_after_the_grace(project: TestProject) -> None:
    started = time.monotonic()
    result, sink = project.sh(
        "dev", "trap '' TERM; echo started; sleep 1002; sleep 1002", timeout_ms=1000
    )
    took = time.monotonic() - started
    assert result.timed_out, sink.err
    assert took >= 1.0 + 1.0 - 0.2  # the idle timeout, then CONTAINER_STOP_GRACE=1
    assert took < 10
    assert not sandbox_processes(b"sleep 1002")


def test_an_interrupt_leaves_nothing_running(project: TestProject) -> None:
    def interrupt_once_running() -> None:
        wait_until(lambda: sandbox_processes(b"sleep 1003"))
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        project.sh("dev", "sleep 1003")
    wait_until(lambda: not sandbox_processes(b"sleep 1003"), timeout=10)
    log = sorted((project.root / "groups/dev/logs").iterdir())
    assert log and "interrupted" in log[-1].read_text()


def _cli(project: TestProject, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "--root", str(project.root), *args],
        env=project.environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_stopped_cli_leaves_nothing_running(project: TestProject, how: signal.Signals) -> None:
    marker = f"sleep 10{how.value:02d}"
    proc = _cli(project, "run", "dev", "--", "sh", "-c", f"echo started; {marker}")
    watchdog(proc)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        inside = wait_until(lambda: sandbox_processes(marker.encode()))
        tree = descendants(proc.pid)
        assert set(inside) <= set(tree)
        proc.send_signal(how)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if how == signal.SIGKILL:
        assert code == -9
    else:
        assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[how], proc.stderr.read()  # type: ignore[union-attr]
    wait_until(lambda: not alive(tree), timeout=10)


@pytest.mark.skipif(not AS_ROOT, reason="cgroup limits need root here (no delegated cgroup v2)")
def test_the_process_limit_stops_a_fork_bomb(project: TestProject) -> None:
    result, sink = project.command("dev", "python3", "-c", FORKS)
    assert result.exit_code == 0, sink.err
    assert int(sink.text) == 200  # the default limit (1024) lets all of them run
    project.config("dev", pids=64)
    result, sink = project.command("dev", "python3", "-c", FORKS)
    assert result.exit_code == 0, sink.err
    assert int(sink.text) < 64


@pytest.mark.skipif(not AS_ROOT, reason="cgroup limits need root here (no delegated cgroup v2)")
def test_the_memory_limit_kills_a_large_allocation(project: TestProject) -> None:
    grab = "x = b'x' * (1 << 30); print(len(x))"
    result, sink = project.command("dev", "python3", "-c", grab)
    assert result.exit_code == 0, sink.err  # the default 2048 MB allows it
    project.config("dev", ram=256)
    result, sink = project.command("dev", "python3", "-c", grab)
    assert result.exit_code == 128 + signal.SIGKILL, sink.err
    assert sink.text == ""


@pytest.mark.skipif(not AS_ROOT, reason="cgroup limits need root here (no delegated cgroup v2)")
def test_the_cgroups_are_set_and_removed(project: TestProject) -> None:
    project.config("dev", pids=64, ram=256, cpus=1)
    runner, box = in_thread(lambda: project.sh("dev", "sleep 1.5"))
    sleeper = wait_until(lambda: sandbox_processes(b"sleep 1.5"))[0]
    with open(f"/proc/{sleeper}/cgroup") as fh:
        paths = {
            controller: path
            for _, controllers, path in (line.strip().split(":", 2) for line in fh)
            for controller in controllers.split(",")
        }
    groups = {c: Path("/sys/fs/cgroup", c, paths[c].lstrip("/")) for c in ("memory", "pids", "cpu")}
    limits = {
        "memory": (groups["memory"] / "memory.limit_in_bytes").read_text().strip(),
        "pids": (groups["pids"] / "pids.max").read_text().strip(),
        "cpu": (groups["cpu"] / "cpu.cfs_quota_us").read_text().strip(),
    }
    runner.join(30)
    result, sink = box[0]  # type: ignore[misc]
    assert result.exit_code == 0, sink.err
    assert all("/nanoclaw-runtimes/nc-dev-" in str(g) for g in groups.values()), groups
    assert limits == {"memory": str(256 * 2**20), "pids": "64", "cpu": "100000"}
    assert not any(g.exists() for g in groups.values())
