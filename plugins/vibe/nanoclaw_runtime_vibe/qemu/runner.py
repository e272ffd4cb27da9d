"""One execution over a :class:`~.channel.Channel`: the request, the streams, the idle
timeout, the result.

stdout reaches ``sink.on_stdout`` byte for byte and a copy goes through the core's
:class:`~nanoclaw_runtimes_core.protocol.MarkerDecoder` (each block to ``sink.on_output``,
restarting the idle timeout); stderr goes to ``sink.on_stderr`` only, so nothing the agent
prints there is ever taken for a block. The exit status is the agent's own, from the
guest's ``x`` line.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence

import nanoclaw_runtimes_core as nc

from .channel import STDERR, STDOUT, TOKEN_LEN, Channel, ChannelClosed, StreamReader, hexed

KEEP = 10 * 2**20
"""How much of stdout and of stderr a result keeps for the run log (as the core's runner)."""
KEEP_OUTPUTS = 10 * 2**20
STDERR_TAIL = 4000
KILL_GRACE_S = 10.0
"""How long a killed run may take to report its end before the VM is taken for hung."""
DRAIN_S = 30.0
SETUP_FAILED = 125
"""The guest's exit status for a run it could not set up (its ``E`` line says why)."""
"""How long the last output may take to arrive after the guest reported the run's end."""


class VmLost(Exception):
    """The VM stopped answering or went away during the run; ``started`` says whether the
    agent had been started (if not, the run can be retried in a fresh VM)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class Request(nc.Record):
    """What runs, with what, where: everything the guest needs besides the shares' daemons."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    stdin: bytes
    workdir: str
    hostname: str
    not_found: str
    shares: tuple[tuple[str, str, bool], ...]
    """(tag, guest path, read-only), parents first."""
    files: tuple[tuple[str, bytes], ...]
    """(guest path, content) shown read-only: masks and file mounts."""
    folders: tuple[str, ...]
    """Guest folders shown empty and read-only (folder masks)."""
    keep_warm_ms: int
    agent_mode: bool
    timeout_ms: int

    def lines(self, token: bytes) -> list[str]:
        """The control lines of the request."""
        out = [f"R {token.hex()} {len(self.stdin)} {self.keep_warm_ms}"]
        out += [f"a {hexed(word)}" for word in self.argv]
        out += [f"e {hexed(f'{k}={v}')}" for k, v in self.env]
        out += [f"w {hexed(self.workdir)}", f"n {hexed(self.hostname)}"]
        out.append(f"c {hexed(self.not_found)}")
        out += [f"m {tag} {'ro' if ro else 'rw'} {hexed(path)}" for tag, path, ro in self.shares]
        out += [f"f {hexed(path)} {content.hex()}" for path, content in self.files]
        out += [f"d {hexed(path)}" for path in self.folders]
        out.append("g")
        return out


def execute(
    channel: Channel,
    request: Request,
    sink: nc.OutputSink,
    *,
    alive: Callable[[], bool] | None = None,
) -> nc.ExecutionResult:
    """Run ``request`` in the guest at the other end of ``channel``.

    Raises :class:`VmLost` when the guest does not answer (or goes away) before the run
    ended; on an interrupt (Ctrl-C, SIGTERM) the run is killed in the guest first.
    """
    started = time.monotonic()
    token = os.urandom(TOKEN_LEN)
    out = nc.RunOutput(sink, agent_mode=request.agent_mode)
    readers = {
        STDOUT: channel.read_stream(STDOUT, token, out.on_stdout),
        STDERR: channel.read_stream(STDERR, token, out.on_stderr),
    }
    is_alive = alive or (lambda: True)
    try:
        channel.send(request.lines(token))
    except ChannelClosed as exc:
        raise VmLost(f"the VM closed its control channel ({exc})", started=False) from None
    if request.stdin:  # the guest reads the stdin port only when there is input
        channel.send_stdin(token, request.stdin)
    state = _State()
    try:
        end = _wait_for_end(channel, request, out, sink, state, is_alive)
    except BaseException:
        if not state.started:
            raise
        # Interrupted: end the run in the guest before going (bounded), then re-raise.
        with contextlib.suppress(Exception):
            channel.send(["K"])
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                line = channel.next_line(max(0.0, deadline - time.monotonic()))
                if line is None or line.startswith("x "):
                    break
        raise
    if end is None:  # the idle timeout, and the guest ended the run
        return _finish(out, readers, None, request, started, timed_out=True)
    result = _finish(out, readers, end, request, started, timed_out=False)
    if state.errors and result.error is None and end[0] == SETUP_FAILED:
        result = result.replace(
            error=f"the guest could not set up the run: {'; '.join(state.errors)}"
        )
    return result


class _State:
    """How far the run got: started in the guest, killed for its timeout (when)."""

    def __init__(self) -> None:
        self.started = False
        self.killed_at: float | None = None
        self.errors: list[str] = []


def _wait_for_end(
    channel: Channel,
    request: Request,
    out: nc.RunOutput,
    sink: nc.OutputSink,
    state: _State,
    alive: Callable[[], bool],
) -> tuple[int, int, int] | None:
    """Read control lines until ``x``; apply the idle timeout. Returns (status, stdout
    bytes, stderr bytes), or None when the run was killed for its timeout."""
    timed_out = False
    seen_dead = False
    while True:
        if state.killed_at is not None:
            left = state.killed_at + KILL_GRACE_S - time.monotonic()
            if left <= 0:
                raise VmLost(
                    f"the VM did not end the run within {KILL_GRACE_S:.0f} s of being told to",
                    started=True,
                )
            wait = min(left, 0.25)
        else:
            with out.lock:
                left = out.last_activity + request.timeout_ms / 1000 - time.monotonic()
            if state.started and left <= 0:
                timed_out = True
                state.killed_at = time.monotonic()
                try:
                    channel.send(["K"])
                except ChannelClosed:
                    raise VmLost("the VM went away during the run", started=True) from None
                continue
            wait = max(0.01, min(left, 0.25))
        try:
            line = channel.next_line(wait)
        except TimeoutError:
            if not alive():
                if seen_dead:
                    raise VmLost("the VM stopped during the run", started=state.started) from None
                seen_dead = True  # once more: lines it sent just before it ended are still read
            if not state.started and time.monotonic() - out.last_activity > 30:
                raise VmLost("the VM did not start the run within 30 s", started=False) from None
            continue
        if line is None:
            raise VmLost("the VM went away during the run", started=state.started)
        kind, _, rest = line.partition(" ")
        if kind == "s":
            state.started = True
            out.touch()
        elif kind in ("W", "E"):
            message = _unhex(rest)
            sink.on_problem(f"the guest: {message}")
            if kind == "E":
                state.errors.append(message)
                state.started = True  # an error before the start ends the run (x follows)
        elif kind == "x":
            status, out_n, err_n = (int(v) for v in rest.split()[:3])
            return None if timed_out else (status, out_n, err_n)


def _finish(
    out: nc.RunOutput,
    readers: dict[str, StreamReader],
    end: tuple[int, int, int] | None,
    request: Request,
    started: float,
    *,
    timed_out: bool,
) -> nc.ExecutionResult:
    error = None
    if end is not None:
        _status, out_n, err_n = end
        complete = readers[STDOUT].wait_for(out_n, DRAIN_S)
        complete = readers[STDERR].wait_for(err_n, DRAIN_S) and complete
        if not complete:
            error = (
                "the VM's output did not arrive in full (the run ended, but not all of its "
                "stdout/stderr came through); this is a bug: please report it"
            )
    out.close()
    return out.result(
        exit_code=None if timed_out else (end[0] if end else None),
        timed_out=timed_out,
        started=started,
        timeout_ms=request.timeout_ms,
        error=error,
    )


def _unhex(text: str) -> str:
    try:
        return bytes.fromhex(text.strip()).decode("utf-8", errors="replace")
    except ValueError:
        return text


def not_found_message(argv: Sequence[str], agent_mode: bool) -> str:
    """What the guest prints when the command is not there (exit status 127)."""
    if agent_mode:
        return (
            f"nanoclaw: the agent command {argv[0]!r} was not found in the guest. Set the "
            f"group's containerConfig.agentCommand to a command that exists in its disk, or "
            f"install it there (the base's default agent is used when agentCommand is unset)"
        )
    return f"nanoclaw: {argv[0]}: command not found in the guest"
