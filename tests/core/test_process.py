"""The shared subprocess runner, with real processes."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.models import ContainerOutput, OutputSink
from nanoclaw_runtimes_core.process import run_streaming
from nanoclaw_runtimes_core.protocol import MarkerDecoder


class Recorder(OutputSink):
    def __init__(self) -> None:
        self.outputs: list[tuple[float, ContainerOutput]] = []
        self.stdout = b""
        self.stderr = b""
        self.problems: list[str] = []

    def on_output(self, output: ContainerOutput) -> None:
        self.outputs.append((time.monotonic(), output))

    def on_stdout(self, data: bytes) -> None:
        self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        self.stderr += data

    def on_problem(self, message: str) -> None:
        self.problems.append(message)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


EMIT = """
import json, sys, time
def emit(result):
    print('---NANOCLAW_OUTPUT_START---')
    print(json.dumps({'status': 'success', 'result': result}))
    print('---NANOCLAW_OUTPUT_END---', flush=True)
"""


def alive(tag: str) -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if tag.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                pass
    return False


def test_blocks_stream_before_the_process_ends() -> None:
    sink = Recorder()
    started = time.monotonic()
    result = run_streaming(
        py(EMIT + "emit('first'); time.sleep(1.5); emit('second')"), timeout_ms=20_000, sink=sink
    )
    assert result.exit_code == 0 and [o.result for o in result.outputs] == ["first", "second"]
    first_at = sink.outputs[0][0] - started
    assert first_at < result.duration_ms / 1000 - 1.0  # seen well before the end


def test_stdin_is_delivered_and_closed() -> None:
    sink = Recorder()
    result = run_streaming(
        py("import sys; print(sys.stdin.read()[::-1])"),
        stdin=b"abc",
        timeout_ms=20_000,
        sink=sink,
        passthrough=True,
    )
    assert sink.stdout == b"cba\n" and result.text == b"cba\n"


def test_exit_status_and_stderr_tail() -> None:
    sink = Recorder()
    result = run_streaming(
        py("import sys; sys.stderr.write('bad thing\\n'); sys.exit(3)"),
        timeout_ms=20_000,
        sink=sink,
    )
    assert result.exit_code == 3
    assert "bad thing" in result.stderr_tail and b"bad thing" in sink.stderr
    final = result.to_result()
    assert final.status == "error" and "code 3" in (final.error_message() or "")


def test_timeout_without_output_kills_the_whole_group() -> None:
    tag = f"nanoclaw-test-{uuid.uuid4().hex}"
    # A child that ignores SIGTERM and a grandchild: both must go.
    code = f"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{tag}'])
time.sleep(60)
"""
    result = run_streaming(py(code), timeout_ms=700, sink=Recorder(), grace_s=0.5)
    assert result.timed_out and result.exit_code is None
    final = result.to_result()
    assert final.status == "error"
    assert final.error_message() == "Container timed out after 700 ms"
    time.sleep(0.2)
    assert not alive(tag)


def test_each_block_resets_the_idle_timeout_and_idle_after_output_is_success() -> None:
    code = EMIT + "\nfor i in range(4):\n    emit(str(i)); time.sleep(0.6)\ntime.sleep(60)"
    result = run_streaming(py(code), timeout_ms=1500, sink=Recorder(), grace_s=0.5)
    # 4 blocks 0.6 s apart outlive a 1.5 s timeout only because each resets it.
    assert [o.result for o in result.outputs] == ["0", "1", "2", "3"]
    assert result.timed_out and result.to_result().status == "success"


def test_stderr_does_not_reset_the_timeout() -> None:
    code = "import sys, time\nfor _ in range(100):\n    sys.stderr.write('x\\n'); time.sleep(0.1)"
    result = run_streaming(py(code), timeout_ms=1000, sink=Recorder(), grace_s=0.5)
    assert result.timed_out and result.duration_ms < 8000


def test_stop_callback_is_used_before_kill() -> None:
    called = threading.Event()
    result = run_streaming(
        py("import time; time.sleep(60)"),
        timeout_ms=300,
        sink=Recorder(),
        stop=called.set,
        grace_s=0.3,
    )
    assert called.is_set() and result.timed_out


def test_output_caps_flag_truncation_but_blocks_still_arrive() -> None:
    code = EMIT + "\nprint('x' * 5000)\nsys.stderr.write('e' * 5000)\nemit('after')"
    sink = Recorder()
    result = run_streaming(
        py(code), timeout_ms=20_000, sink=sink, passthrough=True, stdout_cap=1000, stderr_cap=1000
    )
    assert result.stdout_truncated and result.stderr_truncated
    assert len(sink.stdout) <= 1000 and len(sink.stderr) <= 1000
    assert [o.result for o in result.outputs] == ["after"]


def test_reported_status_from_stream() -> None:
    code = "print('noise'); print('##EXIT:5'); import sys; sys.exit(0)"
    result = run_streaming(
        py(code), timeout_ms=20_000, sink=Recorder(), decoder=MarkerDecoder(status_marker="##EXIT:")
    )
    assert result.exit_code == 0 and result.reported_status == 5
    assert result.to_result(exit_code=result.reported_status).status == "error"


def test_keyboard_interrupt_cleans_up_and_propagates() -> None:
    tag = f"nanoclaw-test-{uuid.uuid4().hex}"

    def interrupt(proc) -> None:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_streaming(
            py(f"import time; time.sleep(60)  # {tag}"),
            timeout_ms=20_000,
            sink=Recorder(),
            on_start=interrupt,
            grace_s=0.5,
        )
    time.sleep(0.2)
    assert not alive(tag)


def test_missing_executable_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        run_streaming(["/nonexistent/engine"], timeout_ms=1000, sink=Recorder())
