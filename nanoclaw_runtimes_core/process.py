"""The subprocess runner every runtime can use to drive its engine's command line.

It streams stdout through a :class:`~nanoclaw_runtimes_core.protocol.MarkerDecoder`
and hands each output block on at once, applies the contract's idle timeout
(every block resets it), caps what it keeps, and on every way out — exit,
timeout, Ctrl-C, exception — leaves no process of the run behind: the command
runs in its own process group, which is stopped gracefully, then killed, then
reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from attrs import define

from .models import ContainerOutput, ExecutionResult, OutputSink
from .protocol import MarkerDecoder, OutputEvent, ProblemEvent, StatusEvent, TextEvent

DEFAULT_CAP = 10 * 2**20
STDERR_TAIL = 2000
_LINUX = sys.platform.startswith("linux")
_UNSET: object = object()


@define(frozen=True, kw_only=True)
class ProcessResult:
    """What a command did. ``reported_status`` is the last exit status printed behind a
    status marker (for engines such as vibe whose own exit status hides the script's)."""

    exit_code: int | None
    reported_status: int | None = None
    outputs: tuple[ContainerOutput, ...] = ()
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stderr_tail: str = ""
    text: bytes = b""
    duration_ms: int = 0
    timeout_ms: int = 0

    def to_result(self, *, exit_code: int | object | None = _UNSET, error: str | None = None):
        """The :class:`ExecutionResult` of this process, optionally with another exit code."""
        return ExecutionResult(
            exit_code=self.exit_code if exit_code is _UNSET else exit_code,  # type: ignore[arg-type]
            outputs=self.outputs,
            timed_out=self.timed_out,
            stdout_truncated=self.stdout_truncated,
            stderr_truncated=self.stderr_truncated,
            stderr_tail=self.stderr_tail,
            duration_ms=self.duration_ms,
            timeout_ms=self.timeout_ms,
            error=error,
        )


class _Run:
    """The mutable state of one running command, shared with its reader threads."""

    def __init__(
        self,
        sink: OutputSink,
        decoder: MarkerDecoder,
        passthrough: bool,
        stdout_cap: int,
        stderr_cap: int,
        raw_stdout: Callable[[bytes], None] | None,
    ) -> None:
        self.sink, self.decoder, self.passthrough = sink, decoder, passthrough
        self.stdout_cap, self.stderr_cap, self.raw_stdout = stdout_cap, stderr_cap, raw_stdout
        self.last_activity = time.monotonic()
        self.outputs: list[ContainerOutput] = []
        self.reported_status: int | None = None
        self.text = bytearray()
        self.stdout_seen = 0
        self.stdout_truncated = False
        self.stderr_seen = 0
        self.stderr_tail = b""
        self.lock = threading.Lock()

    def on_stdout(self, chunk: bytes) -> None:
        if self.raw_stdout is not None:
            self.raw_stdout(chunk)
        self.stdout_seen += len(chunk)
        for event in self.decoder.feed(chunk) if chunk else self.decoder.close():
            self._dispatch(event)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, OutputEvent):
            with self.lock:
                self.outputs.append(event.output)
                self.last_activity = time.monotonic()
            self.sink.on_output(event.output)
        elif isinstance(event, TextEvent):
            room = self.stdout_cap - len(self.text)
            if len(event.data) > room:
                self.stdout_truncated = True
            if room > 0:
                data = event.data[:room]
                self.text += data
                if self.passthrough:
                    self.sink.on_stdout(data)
        elif isinstance(event, StatusEvent):
            self.reported_status = event.code
        elif isinstance(event, ProblemEvent):
            self.sink.on_problem(event.message)

    def on_stderr(self, chunk: bytes) -> None:
        room = self.stderr_cap - self.stderr_seen
        self.stderr_seen += len(chunk)
        self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL:]
        if room > 0:
            self.sink.on_stderr(chunk[:room])


def _pump(fd: int, handle: Callable[[bytes], None]) -> None:
    """Read a pipe until EOF, handing each chunk on; an empty chunk marks the end."""
    try:
        while chunk := os.read(fd, 65536):
            handle(chunk)
    except OSError:
        pass
    finally:
        handle(b"")
        os.close(fd)


def _feed_stdin(proc: subprocess.Popen[bytes], data: bytes | None) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        if data:
            proc.stdin.write(data)
        proc.stdin.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process_group(
    proc: subprocess.Popen[bytes], *, stop: Callable[[], None] | None, grace_s: float
) -> None:
    """Ask the command to stop (``stop()`` or SIGTERM), wait ``grace_s``, then SIGKILL its group."""
    pgid = proc.pid
    if proc.poll() is None:
        if stop is not None:
            stopper = threading.Thread(target=_quietly(stop), daemon=True)
            stopper.start()
        else:
            _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # Kill whatever is left in the group, including children that outlived the leader.
    _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _quietly(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):
            fn()

    return run


def run_streaming(
    argv: Sequence[str],
    *,
    timeout_ms: int,
    sink: OutputSink,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    decoder: MarkerDecoder | None = None,
    passthrough: bool = False,
    stop: Callable[[], None] | None = None,
    grace_s: float = 15.0,
    stdout_cap: int = DEFAULT_CAP,
    stderr_cap: int = DEFAULT_CAP,
    raw_stdout: Callable[[bytes], None] | None = None,
    die_with_parent: bool = False,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` to completion, streaming its output; see the module docstring.

    ``timeout_ms`` is an idle timeout: it restarts with every output block.
    ``passthrough`` sends stdout outside blocks to ``sink.on_stdout`` (command
    mode). ``stop`` is called once on timeout or interruption to stop the
    sandbox gracefully (e.g. ``docker stop``); SIGKILL of the whole process
    group follows after ``grace_s``. ``die_with_parent`` makes the kernel kill
    the command if this process dies (Linux only; elsewhere it does nothing).
    Raises FileNotFoundError if the executable does not exist.
    """
    run = _Run(sink, decoder or MarkerDecoder(), passthrough, stdout_cap, stderr_cap, raw_stdout)
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_set_parent_death_signal if die_with_parent and _LINUX else None,
    )
    assert proc.stdout is not None and proc.stderr is not None
    threads = [
        threading.Thread(
            target=_pump, args=(os.dup(proc.stdout.fileno()), run.on_stdout), daemon=True
        ),
        threading.Thread(
            target=_pump, args=(os.dup(proc.stderr.fileno()), run.on_stderr), daemon=True
        ),
        threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True),
    ]
    proc.stdout.close()
    proc.stderr.close()
    for thread in threads:
        thread.start()
    timed_out = False
    # A blocking wait in a thread wakes us the moment the process exits (no polling delay).
    exited = threading.Event()
    threading.Thread(target=lambda: (proc.wait(), exited.set()), daemon=True).start()
    try:
        if on_start is not None:
            on_start(proc)
        while not exited.is_set():
            remaining = run.last_activity + timeout_ms / 1000 - time.monotonic()
            if remaining <= 0:
                timed_out = True
                stop_process_group(proc, stop=stop, grace_s=grace_s)
                break
            # Bounded, so an interrupt raised without a real signal is still seen soon.
            exited.wait(min(remaining, 0.25))
    except BaseException:
        stop_process_group(proc, stop=stop, grace_s=min(grace_s, 5.0))
        raise
    finally:
        # Children that outlived the leader hold the pipes open: end them too.
        _signal_group(proc.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=5)
    return ProcessResult(
        exit_code=None if timed_out else proc.returncode,
        reported_status=run.reported_status,
        outputs=tuple(run.outputs),
        timed_out=timed_out,
        stdout_truncated=run.stdout_truncated,
        stderr_truncated=run.stderr_seen > stderr_cap,
        stderr_tail=run.stderr_tail.decode("utf-8", errors="replace"),
        text=bytes(run.text),
        duration_ms=int((time.monotonic() - started) * 1000),
        timeout_ms=timeout_ms,
    )


__all__ = ["ProcessResult", "run_streaming", "stop_process_group"]
