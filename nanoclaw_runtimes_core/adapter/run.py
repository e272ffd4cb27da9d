"""One ``run``: from NanoClaw's command line to the group's runtime, and back to an exit status.

The ``-v HOST:/workspace/group`` mount names the project and the group
(``HOST`` is ``<project>/groups/<folder>``). The ContainerInput is read from
stdin to its end and handed to :meth:`Runtimes.execute` with the run's name,
the mounts and ``-e`` variables NanoClaw passed (re-checked by the core, never
widening what the group may see), so the group's own runtime runs the agent.
stdout passes byte for byte, stderr as it comes; the status is the agent's, or
125 with one ``nanoclaw-runtimes-docker:`` line when the adapter, the runtime or
its engine failed.

Timeouts belong to NanoClaw here: it resets its own timer per output block and
calls ``stop`` when it fires, so the adapter's idle timeout is set to the
longest the core accepts (2^31-1 ms, about 24.8 days) and never fires first.
"""

from __future__ import annotations

import os
import pwd
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..models import OutputSink
from . import PROG
from .flags import ENGINE_FAILURE, AdapterError
from .names import run_name
from .run_args import RunArgs

if TYPE_CHECKING:
    from ..models import ContainerInput, ExecutionResult
    from ..runs import ActiveRun

ADAPTER_TIMEOUT_MS = 2**31 - 1
"""The adapter's idle timeout: the longest the core allows, so NanoClaw's always fires first."""
LOG_PREFIX = "runtimes"
"""The core's run log is ``groups/{folder}/logs/runtimes-<time>.log``: NanoClaw writes its own
``container-<time>.log`` for the same run."""
GROUP_PATH = "/workspace/group"
PROJECT_PATH = "/workspace/project"
SANDBOX_HOME = "/home/node"
THROWAWAY_GROUP = "run"
STOPPED, KILLED, INTERRUPTED, NOT_FOUND, NOT_EXECUTABLE = 143, 137, 130, 127, 126


class PassThrough(OutputSink):
    """The sandbox's stdout and stderr to ours as they come; problems as warning lines.

    A reader that went away (NanoClaw exited) is not an error: output is then dropped
    and the run goes on until it ends or is stopped, as a docker container would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed: set[int] = set()

    def _write(self, fd: int, data: bytes) -> None:
        if fd in self._closed:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            self._closed.add(fd)

    def on_stdout(self, data: bytes) -> None:
        self._write(1, data)

    def on_stderr(self, data: bytes) -> None:
        with self._lock:
            self._write(2, data)

    def on_problem(self, message: str) -> None:
        line = " ".join(message.split())
        with self._lock:
            self._write(2, f"{PROG}: warning: {line}\n".encode())


class _Stop:
    """SIGTERM and SIGHUP end the run the way ``stop`` asks: the first one raises
    SystemExit(143) where the core is waiting (it then stops the sandbox and writes the run
    log); later ones are only noted, so they never cut the cleanup short."""

    def __init__(self) -> None:
        self.signalled = False
        self.active: ActiveRun | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signalled:
            return
        self.signalled = True
        raise SystemExit(STOPPED)

    def registered(self, active: ActiveRun) -> None:
        self.active = active

    def status(self) -> int:
        """143 after ``stop``, 137 after ``kill`` (a stop with no grace)."""
        if self.active is not None and self.active.stop_grace(-1.0) == 0:
            return KILLED
        return STOPPED


def run(args: RunArgs, *, stdin: BinaryIO, environ: Mapping[str, str] | None = None) -> int:
    """Run ``args`` and return docker's exit status for it."""
    env = dict(os.environ if environ is None else environ)
    command = _command(args)
    group_mount = args.mount_at(GROUP_PATH)
    if group_mount is None:
        if command is None:
            raise AdapterError(
                f"run: no -v HOST:{GROUP_PATH} mount: the group folder "
                "(<project>/groups/<folder>) decides the project, the group and its runtime"
            )
        return _throwaway(args, command, env)
    root, folder = project_of(group_mount.host)
    env = _user_environ(args.user, env)
    name = run_name(args.name) if args.name else None
    if command is not None:
        return _execute(root, folder, env, args, name=name, command=command)
    if not args.interactive:
        raise AdapterError(
            "run: -i is required: the agent reads NanoClaw's ContainerInput on stdin"
        )
    inp = _read_input(stdin)
    _check_input(inp, folder, args)
    return _execute(root, folder, env, args, name=name, inp=inp)


def project_of(host: str) -> tuple[Path, str]:
    """``(project root, folder)`` from the host folder of the ``/workspace/group`` mount."""
    path = Path(os.path.abspath(host))
    if path.parent.name != "groups" or path.parent.parent == path.parent:
        raise AdapterError(
            f"run: -v {host}:{GROUP_PATH}: the host folder must be <project>/groups/<folder> "
            "(NanoClaw's layout)"
        )
    return path.parent.parent, path.name


def _command(args: RunArgs) -> tuple[str, ...] | None:
    if args.entrypoint is not None:
        return (args.entrypoint, *args.command)
    return args.command or None


def _read_input(stdin: BinaryIO) -> ContainerInput:
    from ..protocol import MAX_INPUT, InputError, decode_input

    data = stdin.read(MAX_INPUT + 1)
    try:
        return decode_input(data)
    except InputError as exc:
        raise AdapterError("run: " + "; ".join(str(exc).splitlines())) from None


def _check_input(inp: ContainerInput, folder: str, args: RunArgs) -> None:
    """The input must name the mounted group, and only the main group gets the project."""
    if inp.group_folder != folder:
        raise AdapterError(
            f"run: the input's groupFolder is {inp.group_folder!r} but the {GROUP_PATH} mount "
            f"is the group {folder!r}; they must be the same"
        )
    project = args.mount_at(PROJECT_PATH)
    if inp.is_main and project is None:
        raise AdapterError(
            f"run: the input says isMain but no {PROJECT_PATH} mount was given; NanoClaw "
            "mounts the project for its main group: check the group's registration"
        )
    if not inp.is_main and project is not None:
        raise AdapterError(
            f"run: a {PROJECT_PATH} mount was given but the input's isMain is false; the "
            "project is shown to the main group only"
        )


def _user_environ(user: str | None, env: dict[str, str]) -> dict[str, str]:
    """Honour ``--user``: as root it picks the sandbox's unprivileged user
    (``NANOCLAW_SANDBOX_USER``); otherwise sandboxes act as this user, so it must be ours."""
    if user is None:
        return env
    if os.geteuid() == 0:
        return {**env, "NANOCLAW_SANDBOX_USER": user}
    uid_text, _, gid_text = user.partition(":")
    try:
        uid = int(uid_text) if uid_text.isdigit() else pwd.getpwnam(uid_text).pw_uid
        if gid_text:
            import grp

            gid = int(gid_text) if gid_text.isdigit() else grp.getgrnam(gid_text).gr_gid
        else:
            gid = os.getgid()
    except KeyError:
        raise AdapterError(f"run: --user {user}: no such user or group on this host") from None
    if (uid, gid) != (os.getuid(), os.getgid()):
        raise AdapterError(
            f"run: --user {user}: sandboxes act as the user running this command "
            f"(uid {os.getuid()}, gid {os.getgid()}); run it as that user or as root"
        )
    return env


def _host_env(args: RunArgs) -> dict[str, str]:
    """The ``-e`` variables, for the sandbox only; ``HOME=/home/node`` is the sandbox's anyway."""
    return {k: v for k, v in args.env if not (k == "HOME" and v == SANDBOX_HOME)}


def _execute(
    root: Path,
    folder: str,
    env: dict[str, str],
    args: RunArgs,
    *,
    name: str | None,
    inp: ContainerInput | None = None,
    command: Sequence[str] | None = None,
) -> int:
    from ..dispatch import Runtimes
    from ..errors import RuntimeFailure, UserError
    from ..plan import HostMount

    mounts = [
        HostMount(host=m.host, container=m.container, readonly=m.readonly) for m in args.mounts
    ]
    sink = PassThrough()
    with _Stop() as stop:
        try:
            rt = Runtimes(root, environ=env)
            result = rt.execute(
                folder,
                input=inp,
                command=tuple(command) if command is not None else None,
                timeout_ms=ADAPTER_TIMEOUT_MS,
                sink=sink,
                run_name=name,
                host_mounts=mounts,
                host_env=_host_env(args),
                on_registered=stop.registered,
                log_prefix=LOG_PREFIX,
            )
        except SystemExit as exc:
            if stop.signalled:
                return stop.status()
            raise AdapterError(f"run: ended early (status {exc.code})") from None
        except KeyboardInterrupt:
            return INTERRUPTED
        except (UserError, RuntimeFailure) as exc:
            raise AdapterError("; ".join(str(exc).splitlines()) or type(exc).__name__) from None
        except OSError as exc:
            detail = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            raise AdapterError(f"run: {detail}") from None
    return exit_status(result)


def exit_status(result: ExecutionResult) -> int:
    """The agent's own status; docker's 125/126/127 when it did not run to its end."""
    if result.error is not None:
        message = " ".join(result.error.split())
        _say(message)
        lowered = message.lower()
        if "could not be started" in lowered:
            if "permission denied" in lowered:
                return NOT_EXECUTABLE
            return NOT_FOUND
        return ENGINE_FAILURE
    if result.timed_out:
        _say(f"the run was idle for {result.timeout_ms} ms and was stopped")
        return KILLED
    if result.exit_code is None:
        _say("the sandbox ended without an exit status")
        return ENGINE_FAILURE
    return result.exit_code


def _throwaway(args: RunArgs, command: tuple[str, ...], env: dict[str, str]) -> int:
    """A command with no group (NanoClaw setup's ``--entrypoint /bin/echo IMAGE "Container OK"``):
    run it in a throwaway project on the default runtime, then remove the project."""
    import tempfile

    from ..safefs import remove_tree

    if args.mounts:
        raise AdapterError(
            f"run: {args.mounts[0].given}: mounts need a -v HOST:{GROUP_PATH} mount too "
            "(without one the command runs in a throwaway project)"
        )
    top = Path(tempfile.mkdtemp(prefix=f"{PROG}-"))
    try:
        (top / "groups" / THROWAWAY_GROUP).mkdir(parents=True)
        (top / "data").mkdir()
        env = _user_environ(args.user, env)
        name = run_name(args.name) if args.name else None
        return _execute(top, THROWAWAY_GROUP, env, args, name=name, command=command)
    finally:
        remove_tree(top)


def _say(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
