"""The bubblewrap engine: an ephemeral namespaced sandbox per run, no daemon, no image.

Each run is one ``bwrap`` running as the sandbox user (``request.user``: the
invoking user, or an unprivileged uid when the CLI is root), with new user,
mount, PID, IPC, UTS, cgroup and (unless ``network`` is set) network
namespaces, all capabilities dropped and nested user namespaces disabled.
Inside, the agent is uid 1000, ``node``, in ``/workspace/group``; on the host it
acts as the sandbox user, so what it leaves behind is that user's.

The root is an empty tmpfs, remounted read-only, on which bwrap shows the
host's userland read-only (or ``CONTAINER_ROOTFS``), a small ``/etc``, a
private ``/tmp``, ``/dev``, ``/proc`` and ``/home/node``, then the contract's
mounts in order with their modes, then the masks. Its options and the
sandbox's environment come on a pipe (see :mod:`.bwrap_layout`); the
ContainerInput on stdin. Limits are the core's cgroups; on timeout the sandbox's
processes get SIGTERM, then, ``stop_grace`` seconds later, everything is
killed. It dies with its parent (``setpriv --pdeathsig`` and
``--die-with-parent``): nothing outlives a run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import nanoclaw_runtimes_core as nc

from . import Leftover, bwrap_host, bwrap_masks, bwrap_probe, probe_cache
from .bwrap_layout import Layout

if TYPE_CHECKING:
    from ..settings import ContainerSettings

SANDBOX_UID = 1000
HOSTNAME_PREFIX = "nanoclaw"
INSTALL_FIX = (
    "install bubblewrap 0.8 or later: `sudo apt-get install bubblewrap` (Debian/Ubuntu), "
    "`sudo dnf install bubblewrap` (Fedora), `sudo pacman -S bubblewrap` (Arch)"
)
PREPARE_TIMEOUT_MS = 60_000
ISOLATION = frozenset({"filesystem", "pid", "network", "masks"})
"""What this engine isolates (see ``nanoclaw_runtimes_core.ISOLATION_PROPERTIES``)."""


class Agent(nc.Record):
    """What runs in agent mode: the command, the mounts it needs, the host folders (an
    interpreter's) it needs shown at their own path."""

    command: tuple[str, ...]
    mounts: tuple[nc.Mount, ...] = ()
    prefixes: tuple[Path, ...] = ()


class Sandbox(nc.Record):
    """One sandbox, decided: what it shows, what it runs, with which environment."""

    mounts: tuple[nc.Mount, ...]
    masks: tuple[nc.Mask, ...]
    command: tuple[str, ...]
    env: Mapping[str, str]
    hostname: str
    network: bool
    rootfs: Path | None
    prefixes: tuple[Path, ...] = ()


def configured_user(project: nc.Project | None) -> nc.SandboxUser:
    """The sandbox user outside a run (``NANOCLAW_SANDBOX_USER`` from the environment, else
    the project's ``.env``); raises ConfigError for a bad value."""
    from nanoclaw_runtimes_core.identity import SETTING, sandbox_user

    value = os.environ.get(SETTING)
    if value is None and project is not None:
        from nanoclaw_runtimes_core.config.dotenv import read_dotenv

        value = read_dotenv(project.root).values.get(SETTING)
    return sandbox_user(value or "")


def rootfs_path(settings: ContainerSettings, project: nc.Project) -> Path | None:
    """``CONTAINER_ROOTFS`` as a folder, or None; raises UserError when it is not one."""
    if not settings.rootfs:
        return None
    root = project.resolve(settings.rootfs)
    if not root.is_dir():
        raise nc.UserError(
            f"CONTAINER_ROOTFS: {root} is not a folder; point it at a root file system "
            "(a folder holding usr/, etc/, ...) or leave it empty to use the host's"
        )
    return root


def default_agent(project: nc.Project, rootfs: Path | None) -> Agent:
    """The example agent, run by the host's ``/usr/bin/python3`` (shown through ``/usr``), or
    else by the interpreter running this process, its prefix shown read-only."""
    if rootfs is not None:
        raise nc.UserError(
            "CONTAINER_ROOTFS is set but the group has no agentCommand: the example agent "
            "needs the host's Python, which a custom root file system does not show; set "
            'containerConfig.agentCommand (e.g. ["node", "/app/agent.js"]) or '
            "CONTAINER_AGENT_COMMAND to the agent's command inside that root file system"
        )
    mount = nc.example_agent_mount()
    if os.access(bwrap_host.SYSTEM_PYTHON, os.X_OK):
        return Agent(command=(bwrap_host.SYSTEM_PYTHON, nc.EXAMPLE_AGENT), mounts=(mount,))
    exe, prefixes = bwrap_host.python_paths(hidden=(project.root,))
    return Agent(command=(str(exe), nc.EXAMPLE_AGENT), mounts=(mount,), prefixes=tuple(prefixes))


# ---------------------------------------------------------------------- the command line


MASK_DATA_MAX = 1 << 20
"""A mask's source up to this size is passed to bwrap as data, not bound by its path."""


def mask_contents(sandbox: Sandbox) -> dict[Path, bytes]:
    """The content of each mask source that is a small regular file, read now (no link
    followed). bwrap shows it read-only from a pipe, so the file's folder need not be within
    the sandbox user's reach: the trusted config lies in the run's private folder, and
    binding it by path would make a root run stage every source through a second bwrap."""
    found: dict[Path, bytes] = {}
    for mask in sandbox.masks:
        if mask.source is None or mask.source in found:
            continue
        try:
            fd = os.open(mask.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # left to the bind, which reports it
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size <= MASK_DATA_MAX:
                chunks: list[bytes] = []
                while chunk := os.read(fd, MASK_DATA_MAX + 1):
                    chunks.append(chunk)
                    if sum(len(c) for c in chunks) > MASK_DATA_MAX:
                        break  # grew meanwhile: left to the bind
                else:
                    found[mask.source] = b"".join(chunks)
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


def _sources(sandbox: Sandbox, as_data: Mapping[Path, bytes] | None = None) -> list[Path]:
    found = [m.host_path for m in sandbox.mounts]
    found += [
        m.source for m in sandbox.masks if m.source is not None and m.source not in (as_data or {})
    ]
    found += list(sandbox.prefixes)
    if sandbox.rootfs is not None:
        found += [path for _, path, link in bwrap_host.top_level(sandbox.rootfs, None) if not link]
    return found


def needs_staging(
    sandbox: Sandbox, user: nc.SandboxUser, as_data: Mapping[Path, bytes] | None = None
) -> bool:
    """Whether some source is out of the sandbox user's reach (only when we are root: an
    ordinary user's sandbox is that user); mask sources in ``as_data`` are passed as data."""
    if os.geteuid() != 0:
        return False
    return any(not bwrap_host.reachable(p, user.uid, user.gid) for p in _sources(sandbox, as_data))


def build_layout(
    sandbox: Sandbox, probe: bwrap_probe.Probe, user: nc.SandboxUser, notes: list[str]
) -> Layout:
    """The bwrap options of ``sandbox`` (see the module docstring); ``notes`` collects what
    the user should be told (a mask or mount left out)."""
    contents = mask_contents(sandbox)
    layout = Layout(staged=needs_staging(sandbox, user, contents))
    try:
        _fill(layout, sandbox, probe, user, notes, contents)
    except BaseException:
        layout.close()
        raise
    return layout


def _fill(
    layout: Layout,
    sandbox: Sandbox,
    probe: bwrap_probe.Probe,
    user: nc.SandboxUser,
    notes: list[str],
    contents: Mapping[Path, bytes],
) -> None:
    uid = str(SANDBOX_UID)
    layout.add("--unshare-all", "--unshare-user", "--uid", uid, "--gid", uid)
    if sandbox.network:
        layout.add("--share-net")
    if probe.disable_userns:
        layout.add("--disable-userns")
    layout.add("--die-with-parent", "--new-session", "--cap-drop", "ALL")
    layout.add("--hostname", sandbox.hostname)

    as_root = os.geteuid() == 0

    def visible(path: Path) -> bool:
        return not as_root or bwrap_host.reachable(path, user.uid, user.gid)

    if sandbox.rootfs is not None:
        for name, path, link in bwrap_host.top_level(sandbox.rootfs, None):
            if link is not None:
                layout.add("--symlink", link, f"/{name}")
            else:
                layout.source(path, f"/{name}", readonly=True)
    else:
        for name, path, link in bwrap_host.top_level(Path("/"), bwrap_host.HOST_TOP):
            if link is not None:
                layout.add("--symlink", link, f"/{name}")
            elif visible(path):
                layout.system(path, f"/{name}")
    layout.add("--proc", "/proc", "--dev", "/dev")
    layout.add("--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", nc.SANDBOX_HOME)
    if sandbox.rootfs is None:
        for entry in bwrap_host.etc_entries():
            if visible(entry):
                layout.system(entry, f"/etc/{entry.name}")
    passwd, group = bwrap_host.passwd_lines(SANDBOX_UID, SANDBOX_UID)
    for name, text in (("passwd", passwd), ("group", group)):
        # A root file system is read-only: only a file it has can be shown over.
        if sandbox.rootfs is None or _plain_file(sandbox.rootfs / "etc" / name):
            layout.data(text.encode(), f"/etc/{name}")
    for prefix in sandbox.prefixes:
        layout.source(prefix, str(prefix), readonly=True)
    layout.add("--perms", "0755", "--dir", "/workspace")

    mounts = list(sandbox.mounts)
    shown: list[nc.Mount] = []
    for index, mount in enumerate(mounts):
        problem = bwrap_masks.nested_mount_problem(mounts, index)
        if problem is not None:
            notes.append(problem)
            continue
        layout.source(mount.host_path, mount.container_path, readonly=mount.readonly)
        shown.append(mount)
    placed, mask_notes = bwrap_masks.placements(shown, sandbox.masks)
    notes += mask_notes
    for place in placed:
        if place.folder:
            layout.empty_folder(place.container_path)
        elif place.mask.source is not None and place.mask.source in contents:
            layout.data(contents[place.mask.source], place.container_path)
        elif place.mask.source is not None:
            layout.source(place.mask.source, place.container_path, readonly=True)
        else:
            layout.data(b"", place.container_path)

    layout.add("--remount-ro", "/")
    in_group = any(m.container_path == nc.WORKDIR for m in shown)
    layout.add("--chdir", nc.WORKDIR if in_group else "/")
    layout.add("--clearenv")
    for name, value in sandbox.env.items():
        layout.add("--setenv", name, value)


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def bwrap_path() -> str:
    """bwrap on this process's PATH; raises EngineUnavailable saying how to install it."""
    path = nc.find_program("bwrap")
    if path is None:
        raise nc.EngineUnavailable(f"bubblewrap (bwrap) is not installed; {INSTALL_FIX}")
    return path


def ready_probe(bwrap: str, user: nc.SandboxUser) -> bwrap_probe.Probe:
    """The probe for ``user``; raises EngineUnavailable when a sandbox cannot start."""
    found = bwrap_probe.probe(bwrap, user.uid, user.gid)
    if found.works:
        return found
    if found.missing:
        raise nc.EngineUnavailable(f"{found.message}; {INSTALL_FIX}")
    raise nc.EngineUnavailable(
        f"bubblewrap cannot create a sandbox as uid {user.uid} here: {found.message}; "
        f"{bwrap_probe.userns_fix(user.uid)}"
    )


def explain_exit(result: nc.ExecutionResult) -> nc.ExecutionResult:
    """bwrap's own failures (a mount it cannot make, a command it cannot start) as the run's
    error; other results unchanged."""
    if result.timed_out or result.exit_code != 1:
        return result
    lines = [ln.strip() for ln in result.stderr_tail.splitlines() if ln.strip()]
    if not lines or not lines[-1].startswith("bwrap: "):
        return result
    detail = lines[-1].removeprefix("bwrap: ")
    if detail.startswith("execvp "):
        # A command that cannot be started exits as a shell's would (and as Docker's init does):
        # 127 when it is not found, 126 otherwise; bwrap's own line stays on stderr.
        return result.replace(exit_code=127 if "No such file" in detail else 126)
    return result.replace(error=f"bubblewrap could not set up the sandbox: {detail}")


def _terminate(started: list[int]) -> None:
    """Stop the sandbox gracefully (on timeout or interruption only: loaded then)."""
    from . import pidns

    if started:
        pidns.terminate(started[0])


def run_sandbox(
    sandbox: Sandbox,
    *,
    user: nc.SandboxUser,
    probe: bwrap_probe.Probe,
    bwrap: str,
    timeout_ms: int,
    sink: nc.OutputSink,
    agent_mode: bool,
    stdin: bytes | None,
    limits: nc.LimitPlan | None,
    grace_s: float,
    redact: Callable[[str], str] = str,
) -> nc.ExecutionResult:
    """Start ``sandbox`` and see it to its end (see :func:`nanoclaw_runtimes_core.run_process`)."""
    notes: list[str] = []
    started: list[int] = []
    with build_layout(sandbox, probe, user, notes) as layout:
        for note in notes:
            sink.on_problem(note)
        argv = layout.argv(
            bwrap, list(sandbox.command), drop_to=(user.uid, user.gid) if layout.staged else None
        )
        result = nc.run_process(
            argv,
            timeout_ms=timeout_ms,
            sink=sink,
            agent_mode=agent_mode,
            stdin=stdin,
            pass_fds=list(layout.fds),
            user=None if layout.staged else user,
            limits=limits,
            die_with_parent=True,
            stop=lambda: _terminate(started),
            grace_s=grace_s,
            on_start=lambda proc: started.append(proc.pid),
            redact=redact,
        )
    return explain_exit(result)


# ---------------------------------------------------------------------- status


def limits_text() -> str:
    """Which limits this host enforces for a sandbox run by this process (cached per boot)."""

    def compute() -> dict[str, str]:
        from nanoclaw_runtimes_core.limits import plan_limits

        plan = plan_limits(
            f"nanoclaw-status-{os.getpid()}",
            nc.Limits(cpus=1, memory_mb=64, pids=16),
            dedicated_user=os.geteuid() == 0,
        )
        plan.kill_and_remove()
        enforced = [w for w in ("cpus", "memory", "processes") if w not in plan.unenforced]
        how = sorted({e[e.rfind("(") + 1 : -1] for e in plan.enforced if e.endswith(")")})
        text = f"limits enforced: {', '.join(enforced)} ({', '.join(how)})" if enforced else ""
        if plan.unenforced:
            text += ("; " if text else "") + f"not enforced here: {', '.join(plan.unenforced)}"
        return {"text": text}

    key = {
        **probe_cache.host_key(None),
        "euid": os.geteuid(),
        "cgroup2": os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
        "v": 1,
    }
    return str(probe_cache.cached("bwrap-limits", key, compute).get("text", ""))


class BubblewrapEngine:
    """Runs each execution as one ``bwrap`` (see the module docstring)."""

    name = "bubblewrap"

    def status(self) -> nc.EngineStatus:
        """Installed, new enough, and a trial sandbox starts as the sandbox user (cached)."""
        path = nc.find_program("bwrap")
        if path is None:
            return nc.EngineStatus(
                available=False, engine=self.name, detail="bwrap is not on PATH.", fix=INSTALL_FIX
            )
        try:
            user = configured_user(None)
        except nc.ConfigError as exc:
            return nc.EngineStatus(
                available=False, engine=self.name, detail=str(exc), fix="correct the value"
            )
        found = bwrap_probe.probe(path, user.uid, user.gid)
        if not found.works:
            return nc.EngineStatus(
                available=False,
                engine=self.name,
                version=found.version,
                detail=f"bwrap cannot create a sandbox as uid {user.uid} here: {found.message}",
                fix=INSTALL_FIX if found.missing else bwrap_probe.userns_fix(user.uid),
            )
        who = "you" if user.is_invoking_user else "the sandbox user"
        parts = [
            f"runs as uid {user.uid} ({who}), node (uid {SANDBOX_UID}) inside",
            "nested user namespaces disabled"
            if found.disable_userns
            else "nested user namespaces allowed (this bwrap lacks --disable-userns)",
        ]
        limits = limits_text()
        if limits:
            parts.append(limits)
        return nc.EngineStatus(
            available=True,
            engine=self.name,
            version=found.version,
            detail="; ".join(parts),
            isolation=ISOLATION,
        )

    def execute(self, request: nc.ExecuteRequest[ContainerSettings]) -> nc.ExecutionResult:
        """One execution: the agent (ContainerInput on stdin) or the command."""
        from nanoclaw_runtimes_core.redact import Redactor

        settings = request.settings
        if os.geteuid() == 0 and 0 in (request.user.uid, request.user.gid):
            raise nc.UserError(
                "refusing to run a sandbox as root: the request names no sandbox user "
                "(NANOCLAW_SANDBOX_USER sets it)"
            )
        bwrap = bwrap_path()
        probe = ready_probe(bwrap, request.user)
        rootfs = rootfs_path(settings, request.project)
        mounts = request.mounts
        prefixes: tuple[Path, ...] = ()
        if request.command is not None:
            command = request.command
        elif request.agent_command:
            command = tuple(request.agent_command)
        else:
            agent = default_agent(request.project, rootfs)
            command, prefixes = agent.command, agent.prefixes
            mounts = (*mounts, *agent.mounts)
        sandbox = Sandbox(
            mounts=mounts,
            masks=request.masks,
            command=command,
            env=nc.sandbox_env(request),
            hostname=(request.run_name or f"{HOSTNAME_PREFIX}-{request.group.folder}")[:63],
            network=settings.network,
            rootfs=rootfs,
            prefixes=prefixes,
        )
        limits = nc.host_limits(
            request, nc.Limits(cpus=settings.cpus, memory_mb=settings.ram, pids=settings.pids)
        )
        try:
            return run_sandbox(
                sandbox,
                user=request.user,
                probe=probe,
                bwrap=bwrap,
                timeout_ms=request.timeout_ms,
                sink=request.sink,
                agent_mode=request.input is not None,
                stdin=request.input_json() if request.input is not None else None,
                limits=limits,
                grace_s=float(settings.stop_grace),
                redact=Redactor(request.secret_values()),
            )
        finally:
            limits.kill_and_remove()

    def sweep(self, project: nc.Project, group: str | None) -> list[str]:
        """Nothing outlives a run (the PID namespace dies with bwrap, bwrap with us)."""
        return []

    def leftovers(self, project: nc.Project) -> list[Leftover]:
        """None: a sandbox cannot outlive the process that started it."""
        return []

    def prepare_base(self, request: nc.PrepareRequest[ContainerSettings]) -> str:
        """Start a sandbox as a real run would, as the sandbox user, and have the example agent
        answer in it (with ``CONTAINER_ROOTFS``: run ``true`` there)."""
        from nanoclaw_runtimes_core.protocol import encode_input

        settings = request.settings
        bwrap = bwrap_path()
        user = configured_user(request.project)
        probe = ready_probe(bwrap, user)
        rootfs = rootfs_path(settings, request.project)
        request.progress("starting a trial sandbox", None)
        stdin: bytes | None = None
        if rootfs is not None:
            agent = Agent(command=("true",))
        else:
            agent = default_agent(request.project, None)
            stdin = encode_input(
                nc.ContainerInput(
                    prompt="prepare", group_folder="prepare", chat_jid="prepare", is_main=False
                )
            )
        sandbox = Sandbox(
            mounts=agent.mounts,
            masks=(),
            command=agent.command,
            env={"HOME": nc.SANDBOX_HOME, "PATH": nc.SANDBOX_PATH, "LANG": "C.UTF-8"},
            hostname=f"{HOSTNAME_PREFIX}-prepare",
            network=settings.network,
            rootfs=rootfs,
            prefixes=agent.prefixes,
        )
        sink = _Collect()
        result = run_sandbox(
            sandbox,
            user=user,
            probe=probe,
            bwrap=bwrap,
            timeout_ms=PREPARE_TIMEOUT_MS,
            sink=sink,
            agent_mode=stdin is not None,
            stdin=stdin,
            limits=None,
            grace_s=1.0,
        )
        answered = stdin is None or any(o.status == "success" for o in result.outputs)
        if result.exit_code != 0 or not answered:
            why = result.error_message() or "the example agent gave no answer"
            raise nc.EngineUnavailable(
                f"bubblewrap could not run `{' '.join(agent.command)}` in a trial sandbox: {why}"
            )
        status = self.status()
        what = "the example agent answered" if stdin is not None else "`true` ran"
        version = f"bubblewrap {status.version}" if status.version else "bubblewrap"
        return f"{version} works ({what} in a trial sandbox): {status.detail}"


class _Collect(nc.OutputSink):
    """Keeps nothing but the problems, for prepare's trial run."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def on_problem(self, message: str) -> None:
        self.problems.append(message)
