"""The process runner every runtime can use to drive its engine's command line.

:func:`run_process` starts one command and, until it ends:

- gives it a fixed, minimal environment (:data:`HOST_ENV` plus what the engine
  names): nothing from a group's config reaches a host process;
- writes the input to its stdin, passes its stdout on byte for byte, and parses
  a copy for output blocks, which reach the sink as they arrive;
- applies the contract's idle timeout (each output block restarts it; in
  command mode any output does);
- keeps bounded memory (10 MiB of stdout for the log, a stderr tail, blocks up
  to a total cap);
- runs it as the sandbox user, in its cgroups, killed if this process dies;
- on every way out (exit, timeout, Ctrl-C, SIGTERM, exception) leaves nothing
  behind: the sandbox is stopped, then its process group and cgroups killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path

from .limits import LimitPlan
from .models import ContainerOutput, ExecutionResult, OutputSink, SandboxUser
from .protocol import MarkerDecoder, OutputEvent, ProblemEvent

KEEP_STDOUT = 10 * 2**20
"""How much of stdout and of stderr a run keeps for its log (NanoClaw's cap)."""
KEEP_OUTPUTS = 10 * 2**20
STDERR_TAIL = 4000
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_ENV: Mapping[str, str] = {"PATH": HOST_PATH, "LANG": "C.UTF-8"}
"""The whole environment of an engine's host process, unless the engine adds named variables."""
_LINUX = sys.platform.startswith("linux")
STOP_GRACE: ContextVar[Callable[[float], float] | None] = ContextVar("stop_grace", default=None)
"""Set by the dispatcher for the run in progress: given the default grace, the grace another
process asked for with ``stop -t N`` (:meth:`~nanoclaw_runtimes_core.runs.ActiveRun.stop_grace`)."""


def host_env(*names: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`HOST_ENV` plus the named variables of this process's environment (those the
    engine tool itself needs, e.g. ``DOCKER_HOST``), plus ``extra``."""
    env = dict(HOST_ENV)
    for name in names:
        value = os.environ.get(name)
        if value:
            env[name] = value
    if extra:
        env.update(extra)
    return env


def find_program(name: str, path: str | None = None) -> str | None:
    """The executable ``name`` would run as (searched in ``path``, default ``$PATH``), or None;
    what ``shutil.which(name, path=path)`` answers on POSIX, without importing shutil."""
    if os.path.dirname(name):
        return name if _is_program(name) else None
    if path is None:
        path = os.environ.get("PATH")
        if path is None:
            try:
                path = os.confstr("CS_PATH") or os.defpath
            except (AttributeError, ValueError):
                path = os.defpath
    if not path:
        return None
    seen: set[str] = set()
    for folder in path.split(os.pathsep):
        if folder in seen:
            continue
        seen.add(folder)
        candidate = os.path.join(folder, name)
        if _is_program(candidate):
            return candidate
    return None


def _is_program(path: str) -> bool:
    return os.path.exists(path) and os.access(path, os.F_OK | os.X_OK) and not os.path.isdir(path)


class RunOutput:
    """A run's output as it arrives, for any engine: each chunk passed on to the sink at once
    (stdout byte for byte), blocks decoded in agent mode, and what a result needs kept within
    bounds (10 MiB of each stream, :data:`KEEP_OUTPUTS` of blocks). ``last_activity`` is when
    the idle timeout last restarted: at each block in agent mode, at any output otherwise.
    Reader threads may feed it; read ``last_activity`` under ``lock``."""

    def __init__(
        self,
        sink: OutputSink,
        *,
        agent_mode: bool,
        decoder: MarkerDecoder | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.sink, self.redact = sink, redact
        self.decoder = (decoder or MarkerDecoder()) if agent_mode else None
        self.last_activity = time.monotonic()
        self.outputs: list[ContainerOutput] = []
        self.outputs_size = 0
        self.output_count = 0
        self.session: str | None = None
        self.problems: list[str] = []
        self.stdout = bytearray()
        self.stdout_truncated = False
        self.stderr = bytearray()
        self.stderr_truncated = False
        self.lock = threading.Lock()

    def touch(self) -> None:
        with self.lock:
            self.last_activity = time.monotonic()

    def on_stdout(self, chunk: bytes) -> None:
        """One chunk of stdout; an empty one marks its end (see :meth:`close`)."""
        if not chunk:
            self.close()
            return
        self.sink.on_stdout(chunk)
        self.stdout_truncated |= _keep(self.stdout, chunk)
        if self.decoder is None:
            self.touch()
        else:
            self._events(self.decoder.feed(chunk))

    def on_stderr(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.stderr_truncated |= _keep(self.stderr, chunk)
        self.sink.on_stderr(chunk)
        if self.decoder is None:
            self.touch()

    def close(self) -> None:
        """The end of stdout: a block left open is reported as a problem."""
        if self.decoder is not None:
            self._events(self.decoder.close())

    def _events(self, events: Iterable[OutputEvent | ProblemEvent]) -> None:
        for event in events:
            if isinstance(event, OutputEvent):
                self.touch()
                out = event.output
                self.output_count += 1
                if out.new_session_id:
                    self.session = out.new_session_id
                size = len(out.result or "") + len(out.error or "")
                if self.outputs_size + size <= KEEP_OUTPUTS:
                    self.outputs.append(out)
                    self.outputs_size += size
                self.sink.on_output(out)
            else:
                message = self.redact(event.message)
                self.problems.append(message)
                self.sink.on_problem(message)

    def result(
        self,
        *,
        exit_code: int | None,
        timed_out: bool,
        started: float,
        timeout_ms: int,
        error: str | None = None,
    ) -> ExecutionResult:
        """The run's result from what was kept (``started``: its ``time.monotonic()``)."""
        tail = bytes(self.stderr[-STDERR_TAIL:]).decode("utf-8", errors="replace")
        return ExecutionResult(
            exit_code=exit_code,
            outputs=tuple(self.outputs),
            output_count=self.output_count,
            new_session_id=self.session,
            timed_out=timed_out,
            stdout=bytes(self.stdout),
            stdout_truncated=self.stdout_truncated,
            stderr=bytes(self.stderr),
            stderr_truncated=self.stderr_truncated,
            stderr_tail=self.redact(tail),
            block_problems=tuple(self.problems),
            duration_ms=int((time.monotonic() - started) * 1000),
            timeout_ms=timeout_ms,
            error=error,
        )


def _keep(kept: bytearray, chunk: bytes) -> bool:
    """Keep what fits of ``chunk`` in ``kept``; True when some of it did not."""
    room = KEEP_STDOUT - len(kept)
    if room > 0:
        kept += chunk[:room]
    return len(chunk) > room


def _pump(fd: int, handle: Callable[[bytes], None]) -> None:
    """Read a pipe until EOF, handing each chunk on; an empty chunk marks the end."""
    try:
        while chunk := os.read(fd, 65536):
            handle(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            handle(b"")
        os.close(fd)


def _feed(fd: int, data: bytes | None) -> None:
    try:
        if data:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        os.close(fd)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def launch_prefix(
    *, user: SandboxUser | None, limits: LimitPlan | None, die_with_parent: bool
) -> list[str]:
    """The argv prefix that joins the run's cgroups, sets its rlimit, drops to the sandbox user
    and makes the kernel kill it if this process dies (each an ``exec``: fork-safe)."""
    prefix: list[str] = list(limits.prefix) if limits is not None else []
    if limits is not None and limits.nproc is not None:
        prefix += ["prlimit", f"--nproc={limits.nproc}:{limits.nproc}", "--"]
    setpriv: list[str] = []
    if user is not None and os.geteuid() == 0 and user.uid != 0:
        setpriv += [f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
    if die_with_parent and _LINUX:
        setpriv += ["--pdeathsig=KILL"]
    if setpriv:
        prefix += ["setpriv", *setpriv, "--"]
    return prefix


def run_process(
    argv: Sequence[str],
    *,
    timeout_ms: int,
    sink: OutputSink,
    agent_mode: bool,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    user: SandboxUser | None = None,
    limits: LimitPlan | None = None,
    die_with_parent: bool = True,
    stop: Callable[[], None] | None = None,
    grace_s: float = 15.0,
    interrupt_grace: Callable[[], float] | None = None,
    decoder: MarkerDecoder | None = None,
    redact: Callable[[str], str] = lambda text: text,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> ExecutionResult:
    """Run ``argv`` to completion; see the module docstring.

    ``agent_mode``: stdout carries output blocks, which restart the idle timeout
    ``timeout_ms``; otherwise (command mode) any output does. ``env`` is the whole
    environment of the host process (default :data:`HOST_ENV`). ``user`` and
    ``limits`` apply the sandbox user and cgroups (see :func:`launch_prefix`).
    ``stop`` is called once on timeout or interruption to stop the sandbox
    gracefully (e.g. ``docker stop``); SIGKILL of the process group follows after
    ``grace_s`` (or ``interrupt_grace()`` when interrupted). Raises
    FileNotFoundError when the executable does not exist.
    """
    run = RunOutput(sink, agent_mode=agent_mode, decoder=decoder, redact=redact)
    started = time.monotonic()
    prefix = launch_prefix(user=user, limits=limits, die_with_parent=die_with_parent)
    host = dict(env if env is not None else HOST_ENV)
    program = argv[0] if argv else ""
    checkable = program.startswith("/") or "/" not in program
    if prefix and checkable and find_program(program, path=host.get("PATH", HOST_PATH)) is None:
        # Behind the prefix a missing program would be the prefix's exit 127: say it here.
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    full = [*prefix, *argv]
    stdin_r, stdin_w = os.pipe()
    try:
        proc = subprocess.Popen(
            full,
            stdin=stdin_r,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=host,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
    except BaseException:
        os.close(stdin_w)
        raise
    finally:
        os.close(stdin_r)
    assert proc.stdout is not None and proc.stderr is not None
    threads = [
        threading.Thread(
            target=_pump, args=(os.dup(proc.stdout.fileno()), run.on_stdout), daemon=True
        ),
        threading.Thread(
            target=_pump, args=(os.dup(proc.stderr.fileno()), run.on_stderr), daemon=True
        ),
        threading.Thread(target=_feed, args=(stdin_w, stdin), daemon=True),
    ]
    proc.stdout.close()
    proc.stderr.close()
    for thread in threads:
        thread.start()
    timed_out = False
    exited = threading.Event()

    def wait_for_exit() -> None:
        proc.wait()
        exited.set()

    threading.Thread(target=wait_for_exit, daemon=True).start()
    try:
        if on_start is not None:
            on_start(proc)
        while not exited.is_set():
            with run.lock:
                remaining = run.last_activity + timeout_ms / 1000 - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _stop(proc, stop, grace_s)
                break
            # Bounded, so an interrupt raised without a real signal is still seen soon.
            exited.wait(min(remaining, 0.25))
    except BaseException:
        asked = STOP_GRACE.get()
        grace = min(grace_s, 5.0) if asked is None else asked(min(grace_s, 5.0))
        _stop(proc, stop, interrupt_grace() if interrupt_grace else grace)
        raise
    finally:
        # Children that outlived the leader hold the pipes open: end them, and the cgroups.
        _signal_group(proc.pid, signal.SIGKILL)
        if limits is not None:
            limits.kill_and_remove()
        for thread in threads:
            thread.join(timeout=5)
    code = proc.returncode
    return run.result(
        exit_code=None if timed_out else (128 - code if code is not None and code < 0 else code),
        timed_out=timed_out,
        started=started,
        timeout_ms=timeout_ms,
    )


def _stop(proc: subprocess.Popen[bytes], stop: Callable[[], None] | None, grace_s: float) -> None:
    """Ask the command to stop (``stop()`` or SIGTERM to its group), wait ``grace_s``, then
    SIGKILL its whole process group."""
    if proc.poll() is None:
        if stop is not None:
            threading.Thread(target=_quietly(stop), daemon=True).start()
        else:
            _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(grace_s, 0.0))
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _quietly(fn: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(Exception):
            fn()

    return call


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie holds no descriptor, so it is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as stat:
        if stat.read().rpartition(b")")[2].split()[0] == b"Z":
            return False
    return True


def resident_mb(pid: int) -> float | None:
    """A process's resident memory in MB (``VmRSS``), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def exit_status(code: int | None) -> int:
    """A process's exit status as a shell reports it (a signal N is 128 + N)."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


__all__ = [
    "HOST_ENV",
    "exit_status",
    "find_program",
    "host_env",
    "launch_prefix",
    "pid_running",
    "resident_mb",
    "run_process",
]
