"""What the image engines (Docker, Podman, Apple's ``container``) share: one execution end to
end through the engine's command line, stopping and removing a container by name, finding the
containers a killed run left, and building or pulling the agent image.

One execution: ``TOOL run --rm --name RUN ... IMAGE`` through
:func:`nanoclaw_runtimes_core.run_process`, the ContainerInput on stdin in agent mode.

- The sandbox's environment (:func:`nanoclaw_runtimes_core.sandbox_env`, the image's own
  ``PATH`` kept) travels in ``--env-file /dev/fd/N``, a pipe the client inherits: never in
  argv, never in a host process's environment, never in a file.
- The client's own environment is :data:`nanoclaw_runtimes_core.HOST_ENV` plus the tool's
  variables (``DOCKER_HOST``, ``CONTAINERS_CONF``, ...), nothing from a group's config.
- On timeout or interruption the container is stopped (``stop -t GRACE``; its init makes
  that take milliseconds), then removed if it is still there.
- A run records its container in the group's state folder until it is gone; a record found
  by the next run of the group is a container a killed run left, and it is removed then.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import Leftover, probe_cache

if TYPE_CHECKING:
    from ..settings import ContainerSettings

RUNTIME = "container"
LABEL_PROJECT = "nanoclaw-runtimes.project"
LABEL_GROUP = "nanoclaw-runtimes.group"
MANAGE_TIMEOUT_S = 30.0
"""Bound on the engine's short management commands (ps, rm, kill, inspect)."""
STOP_MARGIN_S = 10.0
"""Time allowed beyond the grace for the engine's stop command and the client's exit."""
INTERRUPT_GRACE_S = 2.0
"""Grace a sandbox gets on Ctrl-C (``stop -t N`` asks for its own)."""
RECORD_PREFIX = "leftover-"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_SYNC_WRITE = 16 * 1024  # what every pipe holds without a reader (macOS: 16 KiB)


# --------------------------------------------------------------------------- environment


def env_file_text(request: nc.ExecuteRequest[ContainerSettings]) -> bytes:
    """The sandbox's environment as an env file (``NAME=VALUE`` lines, values verbatim), the
    image's own ``PATH`` kept. Raises UserError (naming the variable, never its value) for a
    value an env file cannot carry."""
    env = nc.sandbox_env(request)
    env.pop("PATH", None)
    lines = []
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise nc.UserError(
                f"sandbox variable {key!r}: a name is letters, digits and '_', not starting "
                "with a digit; fix it in containerConfig.env or CONTAINER_ENV"
            )
        if any(c in value for c in "\n\r\0"):
            raise nc.UserError(
                f"sandbox variable {key}: its value holds a line break or a NUL byte, which "
                "container engines cannot pass; change it in containerConfig.env or CONTAINER_ENV"
            )
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode()


@contextlib.contextmanager
def env_pipe(data: bytes) -> Iterator[int]:
    """The read end of a pipe holding ``data`` (closed at the end), for ``pass_fds``; a
    client reads it as ``/dev/fd/N``. Large data is written by a thread as it is read."""
    read_fd, write_fd = os.pipe()
    writer: threading.Thread | None = None
    try:
        if len(data) <= _SYNC_WRITE:
            os.write(write_fd, data)
            os.close(write_fd)
        else:
            writer = threading.Thread(target=_write_all, args=(write_fd, data), daemon=True)
            writer.start()
        yield read_fd
    finally:
        os.close(read_fd)
        if writer is not None:
            writer.join(timeout=5)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the client ended without reading it all
    finally:
        os.close(fd)


def empty_sources(run_name: str) -> Path:
    """A folder holding an empty read-only ``file`` and ``folder``, shown over masked paths
    whose mask has no source: in the run's private folder, which the core removes after the
    run (a read-only bind of ``/dev/null`` would still take writes: it is a device)."""
    base = nc.runs_dir()
    folder = base / run_name if run_name and (base / run_name).is_dir() else None
    if folder is None:
        folder = base / "image-engine-masks"
        folder.mkdir(mode=0o700, exist_ok=True)
    empty = folder / "empty"
    empty.mkdir(mode=0o755, exist_ok=True)
    (empty / "folder").mkdir(mode=0o555, exist_ok=True)
    file = empty / "file"
    if not file.exists():
        file.touch(mode=0o444)
    return empty


def tool_exe(tool: str) -> str | None:
    """The engine's executable, from the invoking user's PATH."""
    return shutil.which(tool)


# --------------------------------------------------------------------------- probes


class ProbeFailed(Exception):
    """A status probe found the engine unusable; nothing is cached."""

    def __init__(self, status: nc.EngineStatus) -> None:
        super().__init__(status.detail)
        self.status = status


def cached_facts(
    name: str, key: dict[str, Any], probe: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``probe()``'s facts, cached per host under ``key``; a probe that raises ProbeFailed is
    not cached, so a fixed engine is seen at once."""
    return probe_cache.cached(name, key, probe)


def file_identity(path: str | None) -> list[Any]:
    """What tells one version of a file (or socket) from another, for cache keys."""
    if not path:
        return []
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_ino, st.st_size, st.st_mtime_ns]


# --------------------------------------------------------------------------- records


class Listed(nc.Record):
    """A container of this project as the engine lists it."""

    name: str
    group: str | None
    state: str


def project_tag(project: nc.Project) -> str:
    """The label value telling this project's containers from other projects'."""
    from nanoclaw_runtimes_core.plan import project_tag as tag

    return tag(project.root)


def state_root(project: nc.Project) -> Path:
    """The runtime's state folders, one per group (``ExecuteRequest.state_dir``)."""
    return project.root / "data" / "runtimes" / RUNTIME


def _records(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    try:
        return sorted(folder.glob(f"{RECORD_PREFIX}*.json"))
    except OSError:
        return []


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _NAME.fullmatch(str(data.get("name", ""))):
        return None  # only a container name this runtime could have given
    return data


# --------------------------------------------------------------------------- the engine


class ImageEngine:
    """A container engine driven through its command line ``tool``."""

    name: str
    tool: str
    env_names: tuple[str, ...] = ()
    """The tool's own environment variables, passed on to it when set."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self._exe: str | None = None

    # ------------------------------------------------------------------ what subclasses say

    def run_argv(
        self, request: nc.ExecuteRequest[ContainerSettings], name: str, env_file: str
    ) -> list[str]:
        """``TOOL run ...`` for one execution."""
        raise NotImplementedError

    def stop_argv(self, name: str, grace: int) -> list[str]:
        return [self.exe, "stop", "-t", str(grace), name]

    def kill_argv(self, name: str) -> list[str]:
        return [self.exe, "kill", name]

    def remove_argv(self, name: str) -> list[str]:
        return [self.exe, "rm", "-f", name]

    def listed(self, project: nc.Project, group: str | None) -> list[Listed]:
        """The project's containers (of one group, or all), running or not."""
        raise NotImplementedError

    def judge(
        self, request: nc.ExecuteRequest[ContainerSettings], result: nc.ExecutionResult
    ) -> nc.ExecutionResult:
        """Tell the engine's own failures (an error explaining them) from the sandbox's exit
        status, which passes through."""
        return result

    def install_fix(self) -> str:
        return f"install {self.tool}"

    def image_present(self, ref: str) -> tuple[bool, str]:
        """Whether the engine has image ``ref``, and the context fingerprint it carries."""
        raise NotImplementedError

    def build_argv(self, ref: str, context: Path, stamp: str) -> list[str]:
        from . import image

        return [
            self.exe,
            "build",
            "-t",
            ref,
            "--label",
            f"{image.CONTEXT_LABEL}={stamp}",
            "-f",
            str(context / "Dockerfile"),
            str(context),
        ]

    def pull_argv(self, ref: str) -> list[str]:
        return [self.exe, "pull", ref]

    def status(self) -> nc.EngineStatus:
        """Whether the engine can run here (see the Engine protocol)."""
        raise NotImplementedError

    def require(self) -> None:
        """Raise EngineUnavailable, saying how to fix it, when the engine cannot run here."""
        status = self.status()
        if not status.available:
            raise nc.EngineUnavailable(f"{status.detail} Fix: {status.fix}")

    # ------------------------------------------------------------------ the tool

    @property
    def exe(self) -> str:
        """The tool's executable; raises EngineUnavailable when it is not installed."""
        if self._exe is None:
            found = tool_exe(self.tool)
            if found is None:
                raise nc.EngineUnavailable(
                    f"{self.tool} is not installed (not on PATH); {self.install_fix()}, or "
                    "choose another engine (CONTAINER_ENGINE); `nanoclaw-runtimes doctor` "
                    "shows what this host offers"
                )
            self._exe = found
        return self._exe

    def host_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of the tool's process: the core's minimal one, the tool's own
        folder first on PATH (so it finds its helpers), and its own variables."""
        env = nc.host_env(*self.env_names)
        if overrides is not None:
            for key in self.env_names:
                env.pop(key, None)
            env.update({k: v for k, v in overrides.items() if k in self.env_names})
        folder = os.path.dirname(self.exe)
        if folder and folder not in env["PATH"].split(os.pathsep):
            env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"
        return env

    def call(
        self,
        argv: list[str],
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> nc.ToolResult:
        """A short tool command, bounded in time (default :data:`MANAGE_TIMEOUT_S`), in the
        tool's environment."""
        bound = MANAGE_TIMEOUT_S if timeout_s is None else timeout_s
        return nc.run_tool(argv, timeout_s=bound, env=env if env is not None else self.host_env())

    # ------------------------------------------------------------------ one execution

    def execute(self, request: nc.ExecuteRequest[ContainerSettings]) -> nc.ExecutionResult:
        """One execution, as the ``execute`` hook describes it (see the module docstring)."""
        name = request.run_name or f"nc-run-{uuid.uuid4().hex[:12]}"
        self.remove_left_by_killed_runs(request)
        data = env_file_text(request)
        with env_pipe(data) as fd:
            argv = self.run_argv(request, name, f"/dev/fd/{fd}")
            if request.debug:
                request.sink.on_stderr(f"+ {shlex.join(argv)}\n".encode())
            stopper = _Stopper(self, name, request)
            record = self._record(request, name)
            try:
                result = nc.run_process(
                    argv,
                    timeout_ms=request.timeout_ms,
                    sink=request.sink,
                    agent_mode=request.input is not None,
                    stdin=request.input_json() if request.input is not None else None,
                    env=self.host_env(),
                    cwd=Path("/"),
                    pass_fds=(fd,),
                    die_with_parent=True,
                    stop=stopper.stop,
                    grace_s=stopper.wait_s(),
                    interrupt_grace=stopper.interrupted,
                )
            except FileNotFoundError:
                self._forget(record)
                raise nc.EngineUnavailable(
                    f"{argv[0]} could not be started; {self.install_fix()}"
                ) from None
            except BaseException:
                if self.remove(name) is not None:
                    self._forget(record)
                raise
        if result.timed_out and self.remove(name) is None:
            return self.judge(request, result)  # the record stays: the next run removes it
        self._forget(record)
        return self.judge(request, result)

    def stop(self, name: str, grace: int) -> None:
        """``stop -t GRACE NAME``, then ``kill NAME`` if that failed."""
        result = self.call(self.stop_argv(name, grace), timeout_s=grace + STOP_MARGIN_S)
        if not result.ok:
            self.call(self.kill_argv(name))

    def remove(self, name: str, env: Mapping[str, str] | None = None) -> bool | None:
        """Remove container ``name`` at once, running or not: True when it was there, False
        when it was already gone, None when the engine could not be asked."""
        try:
            result = self.call(self.remove_argv(name), env=self.host_env(env) if env else None)
        except nc.EngineUnavailable:
            return None
        if result.returncode is None:
            return None
        if name in result.stdout.split():
            return True
        text = f"{result.stdout}\n{result.stderr}".lower()
        if result.ok or any(s in text for s in ("no such container", "no container", "not found")):
            return False
        return None

    # ------------------------------------------------------------------ leftovers

    def _record(self, request: nc.ExecuteRequest[ContainerSettings], name: str) -> Path | None:
        """Note the container in the group's state folder until it is known to be gone."""
        if request.state_dir is None:
            return None
        try:
            folder = nc.state_folder(request)
            path = folder / f"{RECORD_PREFIX}{name}.json"
            env = {k: v for k in self.env_names if (v := os.environ.get(k))}
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"engine": self.name, "name": name, "env": env}))
            os.replace(tmp, path)
        except OSError:
            return None  # a leftover is then found by `reset` and `stats` only
        return path

    @staticmethod
    def _forget(record: Path | None) -> None:
        if record is not None:
            with contextlib.suppress(OSError):
                record.unlink()

    def remove_left_by_killed_runs(self, request: nc.ExecuteRequest[ContainerSettings]) -> None:
        """Remove the containers that killed runs of the group left (the group's lock is held:
        any record is of a run that is over)."""
        for path in _records(request.state_dir):
            for line in _remove_recorded(path):
                request.sink.on_problem(line)

    def leftovers(self, project: nc.Project) -> list[Leftover]:
        """Containers of the project that outlived their run."""
        return [Leftover(name=c.name, group=c.group) for c in self.listed(project, None)]

    def sweep(self, project: nc.Project, group: str | None) -> list[str]:
        """Remove the project's containers (of one group, or of every group) and the records
        of killed runs; one line each."""
        removed: list[str] = []
        for listed in self.listed(project, group):
            if self.remove(listed.name):
                removed.append(
                    f"removed {self.name} container {listed.name} ({listed.state}), "
                    f"left by a run of group {listed.group or '?'} that was killed"
                )
        root = state_root(project)
        folders = [root / group] if group is not None else sorted(root.glob("*"))
        for folder in folders:
            for path in _records(folder):
                removed += _remove_recorded(path, quiet_if_gone=True)
        return removed

    # ------------------------------------------------------------------ the image

    def prepare_base(self, request: nc.PrepareRequest[ContainerSettings]) -> str:
        """Build the sample image (the default image name) or pull the configured one."""
        from ..settings import DEFAULT_IMAGE
        from . import image  # only when building: the run path does not need it

        self.require()
        ref = request.settings.image
        present, stamp = self.image_present(ref)
        if ref == DEFAULT_IMAGE:
            files = image.context_files()
            wanted = image.fingerprint(files)
            if present and stamp == wanted and not request.force:
                return f"image {ref} is up to date ({self.name})"
            with image.build_context(files) as context:
                request.progress(f"building {ref} with {self.tool}", None)
                image.run_visible(
                    self.build_argv(ref, context, wanted),
                    what=f"{self.tool} build",
                    env=self.host_env(),
                )
            return f"built image {ref} with {self.tool}"
        if present and not request.force:
            return f"image {ref} is present ({self.name})"
        request.progress(f"pulling {ref} with {self.tool}", None)
        argv = self.pull_argv(ref)
        image.run_visible(argv, what=" ".join(argv[1:3]), env=self.host_env())
        return f"pulled image {ref} with {self.tool}"


def _remove_recorded(path: Path, *, quiet_if_gone: bool = False) -> list[str]:
    """Remove the container a record names, with the engine and environment it ran with; the
    record goes once the container is known to be gone."""
    from . import make_engine

    data = _read_record(path)
    if data is None:
        with contextlib.suppress(OSError):
            path.unlink()
        return []
    try:
        engine = make_engine(str(data.get("engine", "")))
    except ValueError:
        return []
    if not isinstance(engine, ImageEngine):
        return []
    env = data.get("env") if isinstance(data.get("env"), dict) else None
    gone = engine.remove(data["name"], env=env)
    if gone is None:
        return [
            f"{engine.name} container {data['name']}, left by a run that was killed, could not "
            "be removed yet (the engine did not answer); the next run or `reset` tries again"
        ]
    with contextlib.suppress(OSError):
        path.unlink()
    if gone or not quiet_if_gone:
        return (
            [f"removed {engine.name} container {data['name']}, left by a run that was killed"]
            if gone
            else []
        )
    return []


class _Stopper:
    """How a run's container is stopped: the grace depends on why (timeout, Ctrl-C, ``stop``)."""

    def __init__(
        self, engine: ImageEngine, name: str, request: nc.ExecuteRequest[ContainerSettings]
    ) -> None:
        self.engine, self.name, self.request = engine, name, request
        self.grace = request.settings.stop_grace

    def wait_s(self) -> float:
        """How long the client is given to end once the stop began."""
        return self.grace + STOP_MARGIN_S

    def interrupted(self) -> float:
        """Interrupted (Ctrl-C, SIGTERM): the grace ``stop -t N`` asked for, else a short one."""
        default = float(min(self.request.settings.stop_grace, INTERRUPT_GRACE_S))
        asked = _asked_grace()
        self.grace = max(0, min(int(asked(default) if asked else default), 600))
        return self.wait_s()

    def stop(self) -> None:
        self.engine.stop(self.name, self.grace)


def _asked_grace() -> Callable[[float], float] | None:
    """What the run in progress was asked for with ``nanoclaw-runtimes stop -t N`` (given the
    default grace, the grace to use), as the dispatcher tells it."""
    from nanoclaw_runtimes_core import process

    stop_grace = getattr(process, "STOP_GRACE", None)
    return stop_grace.get() if stop_grace is not None else None


# --------------------------------------------------------------------------- stderr


def last_lines(tail: str, count: int = 3) -> list[str]:
    """The last non-empty lines of stderr, stripped."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-count:]
