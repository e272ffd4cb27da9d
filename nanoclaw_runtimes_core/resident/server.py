"""The resident helper's process (see :mod:`nanoclaw_runtimes_core.resident`).

``python -c BOOT <socket> <idle ms>``, started by a launcher. One helper per socket (a lock
next to it); it has no threads, so forking is safe. A worker is forked ahead (a *spare*)
and waits on the socket itself, so no run waits for a fork.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pkgutil
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ..locks import lock_fd
from . import wire
from .prefault import prefault

SKIPPED = ("testing", "__main__", "example_agent")
"""Modules a helper does not load ahead: the test kit and what runs inside sandboxes."""
RECEIVE_TIMEOUT_S = 10.0
LOG_MAX = 2**20
"""Past this size the helper's log starts afresh."""
_LOG = [2]
"""The log's descriptor: a worker's stderr becomes its caller's, so the helper keeps a copy."""


def log(message: str) -> None:
    """A line in the helper's log (``<socket>.log``, the stderr it was started with)."""
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}\n"
    with contextlib.suppress(OSError):
        os.write(_LOG[0], line.encode("utf-8", "replace"))


def _open_log() -> None:
    """Keep the log on a descriptor of its own, and start it afresh past LOG_MAX."""
    with contextlib.suppress(OSError):
        if os.fstat(2).st_size > LOG_MAX:
            os.ftruncate(2, 0)
    with contextlib.suppress(OSError):
        _LOG[0] = os.dup(2)


# ----------------------------------------------------------------------------- what it loads


def preload() -> int:
    """Import the CLI, the core and every installed runtime's package; returns the number of
    modules loaded. Nothing is run: a worker starts as a fresh process would, minus imports."""
    from .. import cli, docker_cli  # noqa: F401
    from ..entrypoints import runtime_entry_points

    packages = {"nanoclaw_runtimes_core"}
    for ep in runtime_entry_points():
        packages.add(ep.value.partition(":")[0].strip().split(".")[0])
    for name in sorted(packages):
        _import_tree(name)
    _describe_records()
    return len(sys.modules)


def _describe_records() -> None:
    """What every run works out again about the record classes (their field types, and the
    settings they declare), worked out once: it depends on the code alone."""
    from ..record import Record, field_types
    from ..settings.fields import fields_of

    seen: set[type] = set()
    todo: list[type] = [Record]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo += cls.__subclasses__()
        for describe in (field_types, fields_of):
            with contextlib.suppress(Exception):  # a forward reference, or not settings
                describe(cls)


def _import_tree(name: str) -> None:
    try:
        package = importlib.import_module(name)
    except Exception as exc:
        log(f"not preloaded: {name}: {exc}")
        return
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{name}.", onerror=log):
        if any(part in SKIPPED for part in info.name.split(".")):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            log(f"not preloaded: {info.name}: {exc}")


class Snapshot:
    """The files the helper imported and the folders of its import path, as they were: a
    change (an upgrade, an edit, a distribution installed or removed) makes the helper stale."""

    def __init__(self) -> None:
        files: list[str] = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
        interpreter = [sys.executable, os.path.realpath(sys.executable)]
        self.stamps = {p: _stamp(p) for p in {*files, *sys.path, *interpreter} if p}

    def changed(self) -> str | None:
        for path, stamp in self.stamps.items():
            if _stamp(path) != stamp:
                return path
        return None


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# ----------------------------------------------------------------------------- the helper


class Helper:
    """The helper: it keeps one spare worker forked ahead, waiting on the socket, so a run
    never waits for a fork; it forks the next spare when one is taken, reaps workers and
    tells a launcher how a worker that died without a word ended."""

    def __init__(self, path: str, idle_ms: int) -> None:
        self.path, self.idle_s = path, idle_ms / 1000
        self.workers: dict[int, socket.socket] = {}
        self.spare = 0
        self.last_activity = time.monotonic()
        self.stopping = False
        self.snapshot: Snapshot | None = None
        self.listener: socket.socket | None = None
        self.lock_fd = -1
        self.bound = 0
        self.wake_r, self.wake_w = os.pipe()
        # A spare reports on it when it takes a run (with the run's socket) or finds the
        # helper stale.
        self.reports, self.reporter = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def start(self) -> bool:
        """Take the helper's lock (False: another helper has it), load, listen."""
        self.lock_fd = os.open(
            self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        if not lock_fd(self.lock_fd, wait_s=0):
            return False
        os.ftruncate(self.lock_fd, 0)
        os.write(self.lock_fd, f"{os.getpid()}\n".encode())
        loaded = preload()
        self.snapshot = Snapshot()
        # What is loaded now stays: the collector of a worker never walks it, so the pages a
        # worker shares with the helper stay shared instead of being copied on first touch.
        gc.freeze()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(previous)
        self.bound = os.stat(self.path).st_ino
        listener.listen(64)
        self.listener = listener
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log(f"serving {self.path} ({loaded} modules loaded, idle {self.idle_s:g} s)")
        return True

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def serve(self) -> None:
        while not self.stopping:
            self._reap()
            if not self.spare and not self.stopping:
                self._fork_spare()
            timeout = None
            if not self.workers:
                timeout = self.last_activity + self.idle_s - time.monotonic()
                if timeout <= 0:
                    log("idle; exiting")
                    break
            try:
                ready, _, _ = select.select([self.reports.fileno(), self.wake_r], [], [], timeout)
            except InterruptedError:
                continue
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 512)
            if self.reports.fileno() in ready:
                self._report()
        self._unlisten()
        if self.spare:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.spare, signal.SIGKILL)  # it was waiting for a run, nothing else

    def _fork_spare(self) -> None:
        assert self.listener is not None and self.snapshot is not None
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)  # before its descriptor goes
            for fd in (self.wake_r, self.wake_w, self.lock_fd):
                os.close(fd)
            self.reports.close()
            spare(self.listener, self.reporter, self.snapshot, self.path, self.bound)
        self.spare = pid

    def _report(self) -> None:
        """A spare took a run (``T<pid>`` with the run's socket) or found the helper stale."""
        try:
            message, fds, _, _ = socket.recv_fds(self.reports, 64, 1)
        except OSError:
            return
        self.last_activity = time.monotonic()
        text = message.decode("ascii", "replace")
        if text.startswith("T") and text[1:].isdigit() and fds:
            pid = int(text[1:])
            self.workers[pid] = socket.socket(fileno=fds[0])
            if pid == self.spare:
                self.spare = 0  # the next one is forked at the top of the loop
        else:
            for fd in fds:
                os.close(fd)
        if text == "stale":
            self.stopping = True

    def _unlisten(self) -> None:
        """Stop taking runs: the socket goes (if it is still ours), then the lock."""
        if self.listener is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self.bound:  # not a newer helper's
                    os.unlink(self.path)
            self.listener.close()
            self.listener = None
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.spare:
                self.spare = 0  # died waiting (killed?): another is forked
                continue
            conn = self.workers.pop(pid, None)
            self.last_activity = time.monotonic()
            if conn is None:
                continue
            # The worker said X<status> itself unless it died; the launcher takes the first.
            if os.WIFSIGNALED(status):
                line = f"K{os.WTERMSIG(status)}"
            else:
                line = f"X{os.waitstatus_to_exitcode(status)}"
            with contextlib.suppress(OSError):
                wire.send_line(conn, line)
            conn.close()


def _same_user(conn: socket.socket) -> bool:
    """The caller runs as this helper's user (the folder is private too; this is the check)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True  # no peer credentials here: the 0700 runs folder is the only way in
    raw = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return bool(uid == os.getuid())


# ----------------------------------------------------------------------------- a worker


def spare(
    listener: socket.socket, reporter: socket.socket, snapshot: Snapshot, path: str, bound: int
) -> NoReturn:
    """In a spare worker: wait for one run, report it to the helper, run it; never returns."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    # What a run would do first, done while nobody waits: its copy-on-write faults, and the
    # start of the thread that relays the launcher's signals.
    prefault()
    relay = Relay()
    relay.start()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            os._exit(1)
        if _same_user(conn):
            break
        log("refused a connection from another user")
        conn.close()
    listener.close()
    with contextlib.suppress(OSError):
        socket.send_fds(reporter, [f"T{os.getpid()}".encode()], [conn.fileno()])

    def current() -> bool:
        stale = snapshot.changed()
        if stale is not None:
            log(f"stale ({stale} changed); exiting")
            with contextlib.suppress(OSError):
                reporter.send(b"stale")
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == bound:  # first: the launcher starts a fresh helper
                    os.unlink(path)
        reporter.close()
        return stale is None

    work(conn, relay, current)


def work(conn: socket.socket, relay: Relay, current: Callable[[], bool]) -> NoReturn:
    """In a worker that took a run: take the caller's request and run it, unless ``current()``
    says the helper is stale; never returns."""
    status = 1
    try:
        status = _serve(conn, relay, current)
    except BaseException as exc:  # a worker always ends below, whatever happened
        with contextlib.suppress(BaseException):
            log(f"worker failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _serve(conn: socket.socket, relay: Relay, current: Callable[[], bool]) -> int:
    """The run's exit status; ``R`` to the launcher (it runs the command) if it never began."""
    try:
        request = _receive_request(conn)
        if request is not None:
            os.chdir(request.cwd)
    except (OSError, ValueError):
        request = None
    if request is None:
        wire.send_line(conn, "R")
        return 1
    wire.send_line(conn, f"A{os.getpid()}")
    # Checked while the launcher answers: a stale helper still runs nothing.
    if not current():
        wire.send_line(conn, "R")
        return 0
    if not _receive_go(conn):
        return 1  # the launcher gave up (or was interrupted) before the run: it never starts
    os.umask(request.umask)
    os.environ.clear()
    os.environ.update(request.environ)
    sys.argv = request.argv
    sys.path[0] = request.first_path  # later imports look where the caller's would
    _reopen_std_streams()
    relay.follow(conn)
    status = _run(request.entry)
    _finish()
    relay.finished = True
    wire.send_line(conn, f"X{status}")
    return status


def _receive_request(conn: socket.socket) -> wire.Request | None:
    """The request frame; None if it is malformed or for another interpreter."""
    conn.settimeout(RECEIVE_TIMEOUT_S)
    try:
        head = _exactly(conn, 4)
        size = int.from_bytes(head or b"", "big")
        payload = _exactly(conn, size) if head and size <= wire.MAX_REQUEST else None
    finally:
        conn.settimeout(None)
    if payload is None:
        return None
    try:
        request = wire.Request(payload)
    except wire.BadRequest as exc:
        log(f"refused a request: {exc}")
        return None
    return request if request.ident == wire.identity(sys.path[1:]) else None


def _exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = conn.recv(min(size, 65536))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive_go(conn: socket.socket) -> bool:
    """The launcher's ``G`` with its stdin, stdout and stderr, placed on 0, 1 and 2. They come
    only now: a launcher that gave up before leaves none of its descriptors in flight."""
    conn.settimeout(RECEIVE_TIMEOUT_S)
    flags = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
    fds: list[int] = []
    try:
        data, ancillary, _, _ = conn.recvmsg(2, socket.CMSG_SPACE(3 * 4), flags)
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                step = range(0, len(raw) - len(raw) % 4, 4)
                fds += [int.from_bytes(raw[i : i + 4], sys.byteorder) for i in step]
        if data == b"G":
            data += conn.recv(1)
        if data != b"G\n" or len(fds) != 3:
            return False
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        return True
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)


def _reopen_std_streams() -> None:
    """Text streams over the caller's descriptors, as its own Python would have made them."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        stream = open(  # noqa: SIM115 (they live as long as the worker)
            fd,
            "r" if fd == 0 else "w",
            buffering=1 if fd == 2 or (fd == 1 and os.isatty(1)) else -1,
            closefd=False,
            encoding=old.encoding,
            errors=old.errors,
        )
        setattr(sys, name, stream)


def _run(entry: str) -> int:
    """The command's exit status, as its console script would have ended."""
    if entry == "docker":
        from ..docker_cli import main
    else:
        from ..cli import main
    code: object
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        return 130
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _finish() -> None:
    """What an interpreter does before it exits: wait for its other threads, run atexit."""
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()


class Relay(threading.Thread):
    """Turns the launcher's ``S<signal>`` lines into signals for the run; the launcher's end
    (it died) into one SIGTERM, so the run is stopped and cleaned up. Started in the spare; it
    waits for the run's socket (:meth:`follow`)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="resident-relay")
        self.reader: wire.LineReader | None = None
        self.following = threading.Event()
        self.finished = False
        self.terminated = False
        self.main = threading.main_thread().ident or 0

    def follow(self, conn: socket.socket) -> None:
        self.reader = wire.LineReader(conn)
        self.following.set()

    def run(self) -> None:
        self.following.wait()
        assert self.reader is not None
        while True:
            try:
                line = self.reader.next()
            except OSError:
                line = None
            if line is None:
                if not self.finished and not self.terminated:
                    self._signal(signal.SIGTERM)
                return
            if line.startswith("S") and line[1:].isdigit():
                sig = int(line[1:])
                if sig == signal.SIGHUP:
                    sig = signal.SIGTERM
                if sig in (signal.SIGINT, signal.SIGTERM):
                    self._signal(sig)

    def _signal(self, sig: int) -> None:
        if sig == signal.SIGTERM:
            self.terminated = True
        with contextlib.suppress(OSError):
            signal.pthread_kill(self.main, sig)


def main() -> None:
    _open_log()
    os.chdir("/")  # hold no folder of the launcher that started it (a worker takes its caller's)
    path, idle = sys.argv[1], int(sys.argv[2])
    if wire.socket_path(os.path.dirname(path), wire.identity(sys.path[1:])) != path:
        log("this interpreter is not the one the socket is named for; exiting")
        return
    helper = Helper(path, idle)
    if helper.start():
        helper.serve()
