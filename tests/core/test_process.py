"""run_process: a fixed environment, output byte for byte, the idle timeout, nothing left."""

from __future__ import annotations

import signal
import time

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.testing import RecordingSink
from nanoclaw_runtimes_core.testing.processes import processes_with, wait_until


def _run(argv: list[str], **kwargs: object) -> tuple[nc.ExecutionResult, RecordingSink]:
    sink = RecordingSink()
    options: dict[str, object] = {"timeout_ms": 10_000, "agent_mode": False, "grace_s": 0.5}
    options.update(kwargs)
    return nc.run_process(argv, sink=sink, **options), sink  # type: ignore[arg-type]


def test_the_host_process_gets_a_fixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_TEST_HOST_CANARY", "leak")
    _result, sink = _run(["env"])
    names = {line.split("=", 1)[0] for line in sink.stdout_text.splitlines()}
    assert names <= {"PATH", "LANG", "PWD"} and "leak" not in sink.stdout_text
    monkeypatch.setenv("DOCKER_HOST", "unix:///x")
    assert nc.host_env("DOCKER_HOST", "NOT_SET") == {**nc.HOST_ENV, "DOCKER_HOST": "unix:///x"}


def test_stdout_passes_byte_for_byte_and_the_status_through() -> None:
    result, sink = _run(["sh", "-c", "printf 'a\\000\\377\\r\\n'; printf err >&2; exit 7"])
    assert sink.stdout == b"a\x00\xff\r\n" and sink.stderr == b"err"
    assert result.exit_code == 7 and result.stderr_tail == "err"
    result, _sink = _run(["sh", "-c", "kill -TERM $$"])
    assert result.exit_code == 128 + signal.SIGTERM


def test_blocks_restart_the_idle_timeout_in_agent_mode() -> None:
    block = (
        "printf '%s\\n' ---NANOCLAW_OUTPUT_START--- "
        '\'{"status":"success","result":"r"}\' ---NANOCLAW_OUTPUT_END---'
    )
    script = f"sleep 0.6; {block}; sleep 0.6; {block}; sleep 0.6; echo done"
    result, sink = _run(["sh", "-c", script], timeout_ms=1000, agent_mode=True)
    assert not result.timed_out and result.output_count == 2 and "done" in sink.stdout_text
    result, _sink = _run(["sh", "-c", "echo noise; sleep 5"], timeout_ms=500, agent_mode=True)
    assert result.timed_out and result.exit_code is None and result.status == "error"


def test_a_timeout_leaves_no_process_of_the_group_behind() -> None:
    marker = f"nc-leak-{time.monotonic_ns()}"
    script = f"(exec -a {marker} sleep 60) & (exec -a {marker} sleep 60) & sleep 60"
    started = time.monotonic()
    result, _sink = _run(["bash", "-c", script], timeout_ms=500)
    assert result.timed_out and time.monotonic() - started < 8
    assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)


def test_a_missing_program_raises_file_not_found() -> None:
    for program in ("/nonexistent/program", "no-such-program-anywhere"):
        with pytest.raises(FileNotFoundError):
            _run([program])


def test_pid_running_is_false_for_an_ended_process_and_a_zombie() -> None:
    import os
    import subprocess

    assert nc.pid_running(os.getpid()) and nc.pid_running(1)
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while nc.pid_running(child.pid) and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.01)
    assert not nc.pid_running(child.pid)
    child.wait()
    assert not nc.pid_running(child.pid)
    assert not nc.pid_running(0)
