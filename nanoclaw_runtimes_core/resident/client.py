"""The launcher's half of the resident helper (see :mod:`nanoclaw_runtimes_core.resident`).

It imports only C modules and :mod:`.wire`: what it saves is the imports of the rest.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py would import enum
import _socket
import os
import sys

from ..hostdirs import NotPrivate, runs_folder
from . import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
# The helper's own environment: what decides its sys.path and nothing else (no secrets).
HELPER_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONNOUSERSITE",
    "PYTHONUSERBASE",
    "PYTHONPLATLIBDIR",
    "XDG_CACHE_HOME",
)
BOOT = (
    # Never import from the folder the helper was started in: its first import path is the
    # folder of its interpreter, as a console script's is (a worker takes its caller's).
    "import os, sys; sys.path[0] = os.path.dirname(sys.executable); "
    "from nanoclaw_runtimes_core.resident.server import main; main()"
)
CONFIG_ERROR = 3
ANSWER_TIMEOUT_S = 5.0
"""How long a helper may take to say it took the run (a spare waits for it: milliseconds)."""


def idle_ms(text: str) -> int:
    """The value of ``NANOCLAW_RESIDENT``: milliseconds, 0 for no helper."""
    text = text.strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) > 2**31 - 1:
        raise ValueError(
            f"{wire.ENV}: expected milliseconds from 0 to {2**31 - 1} (how long the resident "
            f"helper stays after its last run; 0 or unset: no helper), got {text!r}"
        )
    return int(text)


def is_run(entry: str, words: list[str]) -> bool:
    """Whether the command line is a ``run`` (the only command a helper takes)."""
    if entry == "cli" and words[:1] == ["--root"]:
        words = words[2:]
    return words[:1] == ["run"]


def run_via_helper(entry: str, argv: list[str]) -> int | None:
    """Have the helper run ``argv`` and return its exit status; None when this process should
    run it itself (no helper yet, which it then starts; a stale one; not a ``run``)."""
    if not is_run(entry, argv[1:]):
        return None  # the command runs here (doctor says what is wrong with the setting)
    try:
        idle = idle_ms(os.environ.get(wire.ENV, ""))
    except ValueError as exc:
        sys.stderr.write(f"nanoclaw-runtimes: {exc}\n")
        return CONFIG_ERROR
    if not idle:
        return None
    try:
        folder = runs_folder()
    except (NotPrivate, OSError):
        return None  # the command itself reports it
    ident = wire.identity(sys.path[1:])
    path = wire.socket_path(folder, ident)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError:
            start_helper(path, idle)
            return None
        try:
            frame = wire.encode_request(
                ident=ident,
                entry=entry,
                first_path=sys.path[0] if sys.path else "",
                argv=argv,
                environ=os.environ,
                cwd=os.getcwd(),
                umask=_umask(),
            )
            sock.sendall(frame)
        except (OSError, wire.BadRequest):
            return None
        status = _follow(sock)
        if status is None:
            start_helper(path, idle)  # this one was stale or refused: the next run has a fresh one
        return status
    finally:
        sock.close()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _follow(sock: _socket.socket) -> int | None:
    """Wait for the worker's ``A``, commit with ``G``, then relay signals until the run's end.
    Until ``G`` nothing runs: a launcher that gives up (no answer in time, a signal) leaves a
    worker that never starts, so a command never runs twice."""
    pending: list[int] = []
    committed = False

    def forward(signum: int, frame: object) -> None:
        pending.append(signum)
        if committed:
            try:  # noqa: SIM105 (contextlib would cost the launcher its imports)
                wire.send_line(sock, f"S{signum}")
            except OSError:
                pass

    previous: dict[int, Callable[..., object] | int | None] = {
        sig: _signal.signal(sig, forward) for sig in FORWARDED
    }
    try:
        reader = wire.LineReader(sock)
        sock.settimeout(ANSWER_TIMEOUT_S)
        while True:
            try:
                line = reader.next()
            except TimeoutError:
                sys.stderr.write(
                    f"nanoclaw-runtimes: warning: the resident helper did not answer within "
                    f"{ANSWER_TIMEOUT_S:g} s; running without it\n"
                )
                line = None
            except OSError:
                line = None
            if line is None:
                if not committed:
                    break
                sys.stderr.write(
                    "nanoclaw-runtimes: the resident helper's process for this run ended "
                    "without an exit status\n"
                )
                return 1
            if line.startswith("A") and not committed:
                if pending:
                    break  # interrupted already: the worker is let go without running
                try:
                    _commit(sock)
                except OSError:
                    break  # e.g. a standard descriptor is closed: the command itself copes
                committed = True
                sock.settimeout(None)
            elif line == "R":
                break  # nothing ran (a stale helper says so even after G)
            elif committed and line[:1] in ("X", "K") and line[1:].isdigit():
                code = int(line[1:])
                if line[0] == "X":
                    return code
                _signal.signal(code, _signal.SIG_DFL)
                os.kill(os.getpid(), code)
                return 128 + code
    finally:
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
    if pending:  # interrupted before anything ran: as the command would have been
        return 130 if pending[0] == _signal.SIGINT else 128 + _signal.SIGTERM
    return None


def _commit(sock: _socket.socket) -> None:
    """``G``, with this process's stdin, stdout and stderr: the worker may run."""
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    sock.sendmsg([b"G\n"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])


def start_helper(path: str, idle: int) -> None:
    """Start a helper for the next run, detached; it logs to ``<socket>.log``."""
    env = {k: os.environ[k] for k in HELPER_ENV if k in os.environ}
    log = path + ".log"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            2,
            log,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
            0o600,
        ),
    ]
    try:  # noqa: SIM105
        os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", BOOT, path, str(idle)],
            env,
            file_actions=actions,
            setsid=True,
        )
    except OSError:
        pass  # no helper this time; the run goes on without one
