"""The resident helper (``NANOCLAW_RESIDENT``) on real bubblewrap: a run it takes behaves as
the same command without it, and every way a run or the helper can end leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.resident import control

from .helpers import TestProject, descendants, live_pids, wait_until, watchdog

CLI = [sys.executable, "-m", "nanoclaw_runtimes_core"]
INPUT = {"prompt": "hi", "groupFolder": "dev", "chatJid": "x@g.us", "isMain": False}


class Resident:
    """A project whose runs go through a helper of their own (a private runs folder)."""

    def __init__(self, project: TestProject, runs: Path, idle_ms: int = 60_000) -> None:
        self.project, self.runs = project, runs
        self.env = {
            **project.environ,
            "NANOCLAW_RESIDENT": str(idle_ms),
            "NANOCLAW_RUNS_DIR": str(runs),
        }

    def popen(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*CLI, "--root", str(self.project.root), *args],
            env={**self.env, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        watchdog(proc)
        return proc

    def run(self, *args: str, stdin: bytes = b"", **env: str) -> tuple[int, str, str]:
        proc = self.popen(*args, **env)
        out, err = proc.communicate(stdin, timeout=60)
        return proc.returncode, out.decode(), err.decode()

    def helper_pid(self) -> int | None:
        """The live helper's pid, or None."""
        found = control.helpers(self.runs)
        return found[0].pid if found else None

    def ready(self) -> int:
        """A helper that takes runs: the first run starts it (and runs itself)."""
        assert self.run("run", "dev", "--", "true")[0] == 0
        pid = control.wait_for_helper(self.runs).pid
        wait_until(lambda: list(self.runs.glob("resident-*.sock")), timeout=30)
        return pid

    def stop(self) -> None:
        for helper in control.stop(self.runs):
            wait_until(lambda: helper.pid not in live_pids(), timeout=10)  # noqa: B023


@pytest.fixture
def resident(project: TestProject, tmp_path: Path) -> Iterator[Resident]:
    helper = Resident(project, tmp_path / "runs")
    try:
        yield helper
    finally:
        helper.stop()


def test_a_run_through_the_helper_is_the_run_without_it(resident: Resident) -> None:
    helper = resident.ready()
    code, out, err = resident.run("run", "dev", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (code, out) == (7, "out\n") and "err\n" in err
    code, out, _ = resident.run("run", "dev", stdin=json.dumps(INPUT).encode())
    assert code == 0 and "You said: 'hi'. Message 1" in out, out
    # The helper ran them: the sandbox of a run is the helper's descendant, not the launcher's.
    proc = resident.popen("run", "dev", "--", "sh", "-c", "echo started; exec sleep 1031")
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    sleeper = wait_until(lambda: _run_tree(helper, "sleep 1031"))
    assert not set(sleeper) & set(descendants(proc.pid))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    wait_until(lambda: not set(sleeper) & set(live_pids()))
    assert resident.helper_pid() == helper


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_signal_to_the_launcher_stops_the_run_and_leaves_nothing(
    resident: Resident, how: signal.Signals
) -> None:
    helper = resident.ready()
    marker = f"sleep 10{how.value:02d}"
    proc = resident.popen("run", "dev", "--", "sh", "-c", f"echo started; exec {marker}")
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    tree = wait_until(lambda: _run_tree(helper, marker))
    proc.send_signal(how)
    code = proc.wait(timeout=30)
    expected = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 143, signal.SIGKILL: -9}
    assert code == expected[how], proc.stderr.read()  # type: ignore[union-attr]
    wait_until(lambda: not set(tree) & set(live_pids()), timeout=15)
    assert resident.helper_pid() == helper  # the helper itself goes on
    assert resident.run("run", "dev", "--", "true")[0] == 0


def test_stop_by_name_ends_a_run_the_helper_took(resident: Resident) -> None:
    resident.ready()
    proc = resident.popen(
        "run",
        "--name",
        "nc-resident-stop",
        "dev",
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 1032",
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    done = subprocess.run(
        [*CLI, "stop", "nc-resident-stop"], env=resident.env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert proc.wait(timeout=30) == 143


def test_each_run_takes_its_own_environment(resident: Resident) -> None:
    resident.ready()
    code, _, err = resident.run("run", "dev", "--", "true", CONTAINER_ENGINE="bubblewrp")
    assert code == 3 and 'did you mean "bubblewrap"' in err, err
    assert resident.run("run", "dev", "--", "true")[0] == 0


def test_a_helper_whose_code_changed_steps_aside(resident: Resident, tmp_path: Path) -> None:
    extra = tmp_path / "extra-path"
    extra.mkdir()
    resident.env["PYTHONPATH"] = str(extra)  # a folder the helper imports from, as it was
    old = resident.ready()
    os.utime(extra, (time.time() + 5, time.time() + 5))  # as if a distribution was installed
    command = "echo ran >> stale.txt; echo still-runs"
    code, out, _ = resident.run("run", "dev", "--", "sh", "-c", command)
    assert (code, out) == (0, "still-runs\n")  # it ran in the launcher itself
    wait_until(lambda: old not in live_pids(), timeout=15)
    # The stale worker said so after the launcher's G: it ran nothing, so the command ran once.
    assert (resident.project.root / "groups/dev/stale.txt").read_text() == "ran\n"
    assert resident.run("run", "dev", "--", "true")[0] == 0  # which starts a fresh helper
    assert control.wait_for_helper(resident.runs).pid != old


def test_a_helper_that_does_not_answer_is_passed_by_and_the_run_happens_once(
    resident: Resident,
) -> None:
    helper = resident.ready()
    frozen = [helper, *descendants(helper)]  # the helper and its spare
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, _, err = resident.run("run", "dev", "--", "sh", "-c", "echo ran >> runs.txt")
        took = time.monotonic() - started
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert code == 0 and "did not answer within 5 s; running without it" in err, (err, took, frozen)
    assert 5 <= took < 30
    time.sleep(1.0)  # the spare, thawed, takes the abandoned request: it must not run it
    assert (resident.project.root / "groups/dev/runs.txt").read_text() == "ran\n"
    assert resident.run("run", "dev", "--", "true")[0] == 0


def test_the_helper_ends_at_its_idle_end(project: TestProject, tmp_path: Path) -> None:
    resident = Resident(project, tmp_path / "runs", idle_ms=1500)
    try:
        pid = resident.ready()
        assert resident.run("run", "dev", "--", "true")[0] == 0
        wait_until(lambda: pid not in live_pids(), timeout=15)
        assert not list(resident.runs.glob("resident-*.sock"))
    finally:
        resident.stop()


def test_the_resident_command_lists_and_stops_helpers(resident: Resident) -> None:
    pid = resident.ready()
    listing = subprocess.run(
        [*CLI, "resident", "--json"], env=resident.env, capture_output=True, timeout=60
    )
    [shown] = json.loads(listing.stdout)
    assert shown["pid"] == pid and shown["rss_mb"] > 0
    stopped = subprocess.run(
        [*CLI, "resident", "--stop"], env=resident.env, capture_output=True, timeout=60
    )
    assert stopped.returncode == 0 and f"pid {pid}  stopped" in stopped.stdout.decode()
    wait_until(lambda: pid not in live_pids())
    assert not list(resident.runs.glob("resident-*.sock"))


def test_a_bad_idle_period_is_refused(resident: Resident) -> None:
    code, _, err = resident.run("run", "dev", "--", "true", NANOCLAW_RESIDENT="soon")
    assert code == 3
    assert "NANOCLAW_RESIDENT: expected milliseconds" in err and "'soon'" in err


def _run_tree(helper: int, marker: str) -> list[int]:
    """The worker of the helper whose sandbox runs ``marker``, with all it started."""
    for worker in descendants(helper):
        tree = [worker, *descendants(worker)]
        if any(_argv(p) == marker for p in tree[1:]):
            return tree
    return []


def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
