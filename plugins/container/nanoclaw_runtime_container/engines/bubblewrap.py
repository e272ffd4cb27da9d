"""The bubblewrap engine: an ephemeral namespaced sandbox per run, no daemon, no image.

Each run gets its own mount, PID, IPC, UTS, cgroup and (unless the group turns
network on) network namespaces, and a user namespace where the host allows one
(the agent then runs as uid 1000, ``node``, mapped to the caller). All
capabilities are dropped. The root is an empty tmpfs, remounted read-only, on
which bwrap shows: the host's userland read-only (or a configured root file
system), the interpreter running this process, a small ``/etc``, a private
``/tmp`` and ``/home/node`` (tmpfs, gone after the run), ``/proc``, ``/dev``,
and the contract's mounts at their container paths. The environment is exactly
the one this engine builds: bwrap's own environment is replaced by it, so values
never appear on a command line.

The sandbox dies with its parent (``--die-with-parent``); killing bwrap kills
the PID namespace's init, which makes the kernel kill every process in it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from attrs import define

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import EngineStatus, Mount

from ..settings import EXAMPLE_AGENT_MODULE
from . import bwrap_host, limits, probe_cache
from .cli import run_tool

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.models import ExecuteRequest, PrepareRequest, Project

    from ..settings import ContainerSettings

SANDBOX_UID = 1000
SANDBOX_HOME = "/home/node"
WORKDIR = "/workspace/group"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_FIX = (
    "install bubblewrap: `sudo apt-get install bubblewrap` (Debian/Ubuntu), "
    "`sudo dnf install bubblewrap` (Fedora), `sudo pacman -S bubblewrap` (Arch)"
)


@define(frozen=True, kw_only=True)
class Probe:
    """What a trial sandbox showed about this host's bubblewrap."""

    works: bool
    userns: bool
    version: str | None
    message: str = ""


@functools.lru_cache(maxsize=4)
def probe(bwrap: str) -> Probe:
    """What bwrap can do here (cached per boot and bwrap binary, see probe_cache)."""
    found = probe_cache.cached(
        "bwrap-probe", probe_cache.host_key(bwrap), lambda: attrs.asdict(_probe(bwrap))
    )
    return Probe(**found)


def _probe(bwrap: str) -> Probe:
    """Start two trivial sandboxes: with a user namespace, then without one."""
    version_run = run_tool([bwrap, "--version"], timeout_s=5)
    version = version_run.stdout.strip().removeprefix("bubblewrap ") or None
    true = shutil.which("true") or "/bin/true"
    common = [
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
    ]
    with_userns = run_tool(
        [
            bwrap,
            *common,
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            true,
        ],
        timeout_s=10,
    )
    if with_userns.ok:
        return Probe(works=True, userns=True, version=version)
    without = run_tool([bwrap, *common, true], timeout_s=10)
    if without.ok:
        return Probe(works=True, userns=False, version=version)
    return Probe(works=False, userns=False, version=version, message=without.message())


class BubblewrapEngine:
    """Runs each execution as ``bwrap … COMMAND`` (see the module docstring)."""

    name = "bubblewrap"
    die_with_parent = True

    def __init__(self, settings: ContainerSettings, project: Project | None) -> None:
        self.settings = settings
        self.project = project
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ status

    def _bwrap(self) -> str:
        path = shutil.which("bwrap")
        if path is None:
            raise EngineUnavailable(f"bubblewrap (bwrap) is not installed; {INSTALL_FIX}.")
        return path

    def status(self) -> EngineStatus:
        """Installed, and a trial sandbox starts."""
        path = shutil.which("bwrap")
        if path is None:
            return EngineStatus(
                available=False, engine=self.name, detail="bwrap is not on PATH.", fix=INSTALL_FIX
            )
        found = probe(path)
        if not found.works:
            return EngineStatus(
                available=False,
                engine=self.name,
                version=found.version,
                detail=f"bwrap cannot create a sandbox here: {found.message}",
                fix="allow unprivileged user namespaces (sysctl "
                "kernel.unprivileged_userns_clone=1, or the distribution's AppArmor profile "
                "for bwrap), or install bwrap setuid root",
            )
        userns = "user namespace" if found.userns else "no user namespace (runs as your uid)"
        return EngineStatus(
            available=True,
            engine=self.name,
            version=found.version,
            detail=f"{userns}; {limits.limits_description()}",
        )

    # ------------------------------------------------------------------ command line

    def _network(self) -> bool:
        return bool(self.settings.network)

    def _rootfs(self) -> Path | None:
        if not self.settings.rootfs:
            return None
        root = (
            self.project.resolve(self.settings.rootfs)
            if self.project
            else Path(self.settings.rootfs)
        )
        if not root.is_dir():
            raise UserError(
                f"CONTAINER_ROOTFS: {root} is not a folder; point it at a root file system "
                "(a folder holding usr/, etc/, ...) or leave it empty to use the host's."
            )
        return root

    def agent_argv(self) -> list[str]:
        """The agent's command line inside the sandbox."""
        if self.settings.agent_command:
            return shlex.split(self.settings.agent_command)
        if self.settings.rootfs:
            raise UserError(
                "CONTAINER_AGENT_COMMAND: with CONTAINER_ROOTFS set, name the agent's command "
                "inside that root file system (the host's Python is not shown there)."
            )
        return [sys.executable, "-m", EXAMPLE_AGENT_MODULE]

    def _ids(self, userns: bool) -> tuple[int, int]:
        return (SANDBOX_UID, SANDBOX_UID) if userns else (os.getuid(), os.getgid())

    def _etc_overlay(self, userns: bool) -> list[str]:
        """A passwd and group naming the sandbox user ``node``, kept under data/container/."""
        if self.project is None:
            return []
        uid, gid = self._ids(userns)
        passwd, group = bwrap_host.passwd_lines(uid, gid)
        folder = self.project.data_dir / "container" / "etc"
        bwrap_host.write_if_changed(folder / f"passwd-{uid}", passwd)
        bwrap_host.write_if_changed(folder / f"group-{gid}", group)
        return [
            "--ro-bind",
            str(folder / f"passwd-{uid}"),
            "/etc/passwd",
            "--ro-bind",
            str(folder / f"group-{gid}"),
            "/etc/group",
        ]

    def sandbox_argv(
        self,
        *,
        mounts: tuple[Mount, ...],
        command: list[str],
        hostname: str,
        include_core: bool,
    ) -> list[str]:
        """The whole command line: limits prefix, bwrap and its options, then ``command``."""
        bwrap = self._bwrap()
        found = probe(bwrap)
        if not found.works:
            raise EngineUnavailable(f"bubblewrap cannot create a sandbox here: {found.message}")
        argv = limits.limit_prefix(self.settings.cpus, self.settings.ram)
        argv += [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
        if found.userns:
            uid, gid = self._ids(True)
            argv += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        argv += ["--cap-drop", "ALL", "--hostname", hostname[:63]]
        if self._network():
            argv.append("--share-net")
        rootfs = self._rootfs()
        private = ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", SANDBOX_HOME]
        if rootfs is not None:
            argv += bwrap_host.top_level_args(rootfs, None) + private
        else:
            argv += bwrap_host.top_level_args(Path("/"), bwrap_host.HOST_TOP)
            # The private /tmp comes before the interpreter's binds: an interpreter or
            # virtual environment under /tmp must stay visible on top of it.
            argv += private
            argv += bwrap_host.etc_args()
            argv += self._etc_overlay(found.userns)
            hidden = (self.project.root,) if self.project else ()
            for path in bwrap_host.python_paths(include_core=include_core, hidden=hidden):
                argv += ["--ro-bind", str(path), str(path)]
        for mount in sorted(mounts, key=lambda m: len(Path(m.container_path).parts)):
            flag = "--ro-bind" if mount.readonly else "--bind"
            argv += [flag, str(mount.host_path), mount.container_path]
        argv += ["--remount-ro", "/", "--chdir", WORKDIR if mounts else "/", "--", *command]
        return argv

    def argv(self, request: ExecuteRequest, name: str) -> list[str]:
        """bwrap with the request's mounts, running the agent or the requested command."""
        command = list(request.command) if request.command is not None else self.agent_argv()
        return self.sandbox_argv(
            mounts=request.mounts,
            command=command,
            hostname=f"nanoclaw-{request.group.folder}",
            include_core=request.command is None and not self.settings.agent_command,
        )

    def env(self, request: ExecuteRequest | None = None) -> dict[str, str]:
        """Only what the sandbox should see: HOME, PATH, LANG, TZ, USER and CONTAINER_ENV."""
        path = BASE_PATH
        if not self.settings.rootfs:
            exe_dir = str(Path(sys.executable).parent)
            if exe_dir not in path.split(":"):
                path += f":{exe_dir}"
        env = {
            "HOME": SANDBOX_HOME,
            "PATH": path,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "USER": "node",
            "LOGNAME": "node",
        }
        if "TZ" in os.environ:
            env["TZ"] = os.environ["TZ"]
        env.update(extra_env(self.settings.env))
        return env

    # ------------------------------------------------------------------ lifecycle

    def started(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Remember bwrap's process, to signal the sandbox later."""
        self._procs[name] = proc

    def stop(self, name: str) -> None:
        """SIGTERM every process of the sandbox except its init; bwrap exits when they end."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        for pid in sandbox_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)

    def kill(self, name: str) -> None:
        """SIGKILL bwrap: the kernel then kills every process of the sandbox."""
        proc = self._procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def sweep(self, group: str) -> list[str]:
        """Nothing outlives a run (--die-with-parent and the PID namespace), so nothing to do."""
        return []

    def leftovers(self, group: str | None) -> list[str]:
        """None: a sandbox cannot outlive the process that started it."""
        return []

    def prepare_base(self, request: PrepareRequest) -> str:
        """Start a sandbox as a real run would (and the host's Python in it, when used)."""
        include_core = not self.settings.agent_command
        command = (
            [sys.executable, "-c", f"import {EXAMPLE_AGENT_MODULE.rsplit('.', 1)[0]}"]
            if include_core and not self.settings.rootfs
            else ["true"]
        )
        argv = self.sandbox_argv(
            mounts=(), command=command, hostname="nanoclaw-prepare", include_core=include_core
        )
        result = run_tool(argv, timeout_s=60, env=self.env())
        if not result.ok:
            raise EngineUnavailable(
                f"bubblewrap could not run `{shlex.join(command)}` in a sandbox: {result.message()}"
            )
        status = self.status()
        return f"bubblewrap {status.version or ''} works: {status.detail}".replace("  ", " ")

    def explain_exit(self, exit_code: int | None, stderr_tail: str) -> str | None:
        """bwrap's own failures (a mount it cannot make, a command it cannot start)."""
        if not exit_code:
            return None
        lines = [ln.strip() for ln in stderr_tail.splitlines() if ln.strip()]
        if lines and lines[-1].startswith("bwrap: "):
            detail = lines[-1].removeprefix("bwrap: ")
            if detail.startswith("execvp "):
                return f"the command could not be started in the sandbox: {detail[7:]}"
            return f"bubblewrap could not set up the sandbox: {detail}"
        return None


def extra_env(entries: tuple[str, ...]) -> dict[str, str]:
    """CONTAINER_ENV entries: ``NAME=VALUE`` as given, ``NAME`` from this process (if set)."""
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    return env


def sandbox_pids(bwrap_pid: int) -> list[int]:
    """PIDs (host view) of the processes inside the sandbox bwrap ``bwrap_pid`` started,
    except the namespace's init (bwrap's child), found by their PID namespace."""
    children = _children(bwrap_pid)
    if not children:
        return []
    init = children[0]
    try:
        target = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (init, bwrap_pid):
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry.name}/ns/pid") == target:
                pids.append(int(entry.name))
    return pids


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task.name}/children") as fh:
                found += [int(p) for p in fh.read().split()]
    return found
