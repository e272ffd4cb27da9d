"""Helpers a runtime uses to build its sandbox: environment, example agent, limits, state.

Everything here is re-exported by :mod:`nanoclaw_runtimes_core`, the one module a
runtime imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .limits import LimitPlan, plan_limits, unenforced_message
from .models import ExecuteRequest, GroupRequest, Limits, Mount, StatsRow
from .mounts import ordered
from .runs import runs_dir
from .safefs import disk_usage, remove_tree

SANDBOX_HOME = "/home/node"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXAMPLE_AGENT = "/opt/nanoclaw/example_agent.py"
"""Where :func:`example_agent_mount` shows the example agent inside a sandbox."""
WORKDIR = "/workspace/group"


def sandbox_env(
    request: ExecuteRequest[Any], *, home: str = SANDBOX_HOME, path: str = SANDBOX_PATH
) -> dict[str, str]:
    """A clean environment for the sandbox: HOME, PATH, LANG, USER, then the group's own
    (``TZ``, ``containerConfig.env``). Deliver it INTO the sandbox (``bwrap --setenv``,
    ``docker --env-file``), never as a host process's environment."""
    env = {"HOME": home, "PATH": path, "LANG": "C.UTF-8", "USER": "node", "LOGNAME": "node"}
    env.update(request.env)
    return env


def example_agent_file() -> Path:
    """The example agent, a standard-library-only script that speaks the NanoClaw protocol."""
    # Beside this module: importing the agent to ask its path would load what it imports.
    return Path(__file__).resolve().with_name("example_agent.py")


def example_agent_mount() -> Mount:
    """A read-only mount that shows the example agent at :data:`EXAMPLE_AGENT`."""
    return Mount(
        host_path=example_agent_file(), container_path=EXAMPLE_AGENT, readonly=True, kind="file"
    )


def agent_command(request: ExecuteRequest[Any], *, python: str = "python3") -> list[str]:
    """What to run in agent mode: the group's ``agentCommand``, else the example agent
    (add :func:`example_agent_mount` to the sandbox's mounts)."""
    if request.agent_command:
        return list(request.agent_command)
    return [python, EXAMPLE_AGENT]


def host_limits(request: ExecuteRequest[Any], limits: Limits) -> LimitPlan:
    """Plan cgroup limits for a sandbox that runs as host processes (pass the plan to
    :func:`~nanoclaw_runtimes_core.run_process`). A limit that cannot be enforced here is
    reported through the sink, or refused with ``NANOCLAW_LIMITS=strict``."""
    plan = plan_limits(
        request.run_name or "run", limits, dedicated_user=not request.user.is_invoking_user
    )
    if plan.unenforced:
        message = unenforced_message(plan.unenforced)
        if request.strict_limits:
            plan.kill_and_remove()
            raise UserError(
                f"refusing to run: {message.split('; set NANOCLAW_LIMITS')[0]} "
                "(NANOCLAW_LIMITS=strict)"
            )
        request.sink.on_problem(message)
    return plan


def state_folder(request: ExecuteRequest[Any] | GroupRequest[Any]) -> Path:
    """This runtime's host-only folder for the group (``data/runtimes/<runtime>/<group>``),
    created on first use with mode 0700."""
    if request.state_dir is None:
        raise UserError("this request has no state folder")
    request.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return request.state_dir


def reset_state(request: GroupRequest[Any]) -> list[str]:
    """Remove the group's state folder (never following links); one line per thing removed."""
    if request.state_dir is None or not os.path.lexists(request.state_dir):
        return []
    usage = disk_usage(request.state_dir)
    remove_tree(request.state_dir)
    return [f"removed {request.state_dir} ({usage.allocated / 2**20:.1f} MB)"]


def state_row(runtime: str, group: str, path: Path, *, kind: str = "state") -> StatsRow | None:
    """A stats row for a state folder or file, or None when it does not exist."""
    if not os.path.lexists(path):
        return None
    from datetime import datetime, timezone

    usage = disk_usage(path)
    return StatsRow(
        runtime=runtime,
        group=group,
        kind=kind,
        path=str(path),
        apparent_mb=usage.apparent / 2**20,
        allocated_mb=usage.allocated / 2**20,
        modified=datetime.fromtimestamp(usage.modified, tz=timezone.utc)
        if usage.modified
        else None,
    )


SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""The host folders a namespace sandbox shows read-only as its system (``/etc`` is left out:
it describes the host)."""
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def unshare_user_flags() -> list[str]:
    """``unshare`` options for the user namespace: ``--user --map-root-user`` for an ordinary
    user (the sandbox's root is that user, nothing more); none when running as root, whose
    mount namespace then belongs to the host (the sandbox cannot undo its mounts) and whose
    sandbox drops to ``request.user`` (see :func:`namespace_setup_script`)."""
    return [] if os.geteuid() == 0 else ["--user", "--map-root-user"]


class NamespaceScript:
    """The ``sh`` script that builds a namespace sandbox, kept in a memory file (it holds the
    sandbox's environment, which must never be on a command line).

    Run it as ``unshare *unshare_user_flags() --mount --pid --fork --net --kill-child *shell
    COMMAND...`` with ``pass_fds=fds``; close it (or use ``with``) once the run is over.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._fd = os.memfd_create("nanoclaw-sandbox-setup", os.MFD_CLOEXEC)
        os.write(self._fd, text.encode())

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptors to pass to the sandbox's process (``run_process(pass_fds=...)``)."""
        return (self._fd,)

    @property
    def shell(self) -> list[str]:
        """The words that run the script: ``sh /proc/self/fd/N``; the command follows them."""
        return ["sh", f"/proc/self/fd/{self._fd}"]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NamespaceScript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def namespace_setup_script(
    request: ExecuteRequest[Any],
    *,
    mounts: Sequence[Mount] = (),
    system: Sequence[str] = SYSTEM_FOLDERS,
    env: Mapping[str, str] | None = None,
    new_root: Path | None = None,
) -> NamespaceScript:
    """The script that builds a sandbox inside fresh mount and pid namespaces (``unshare``):
    a memory file system as its root at ``new_root`` (default: ``root/`` in the run's private
    folder), the host's ``system`` folders read-only, a private ``/tmp``, a minimal ``/dev``,
    its own ``/proc``, the contract's mounts (plus ``mounts``, e.g.
    :func:`example_agent_mount`) parents first with their modes, and the masks; then it
    exports ``env`` (default :func:`sandbox_env`), drops every capability (and, when run as
    root, becomes ``request.user``) and runs its arguments in ``/workspace/group``.

    Every path is quoted and every mount checked: a mount that fails stops the run.
    """
    import shlex

    q = shlex.quote
    root_dir = new_root or runs_dir() / (request.run_name or f"direct-{os.getpid()}") / "root"
    root_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = str(root_dir)
    lines = ["set -eu", f"mount -t tmpfs -o mode=0755,nosuid,nodev nanoclaw {q(root)}"]

    def bind(source: str, target: str, readonly: bool, *, is_file: bool = False) -> None:
        dest = q(root + target)
        if is_file:
            parent = q(os.path.dirname(root + target))
            lines.append(f"mkdir -p {parent}; [ -e {dest} ] || : > {dest}")
        else:
            lines.append(f"mkdir -p {dest}")
        lines.append(f"mount --bind {q(source)} {dest}")
        if readonly:
            lines.append(f"mount -o remount,bind,ro,nosuid,nodev {dest}")

    for folder in system:
        if os.path.islink(folder):
            lines.append(f"ln -s {q(os.readlink(folder))} {q(root + folder)}")
        elif os.path.isdir(folder):
            bind(folder, folder, True)
    lines.append(f"mkdir -p {q(root + '/tmp')} {q(root + '/dev')} {q(root + '/proc')}")
    lines.append(f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(root + '/tmp')}")
    for dev in _DEVICES:
        if os.path.exists(f"/dev/{dev}"):
            bind(f"/dev/{dev}", f"/dev/{dev}", False, is_file=True)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        lines.append(f"ln -s /proc/self/fd/{i} {q(root + '/dev/' + name)}")
    lines.append(f"ln -s /proc/self/fd {q(root + '/dev/fd')}")
    lines.append(f"mount -t proc -o nosuid,nodev,noexec proc {q(root + '/proc')}")
    for mount in ordered([*request.mounts, *mounts]):
        bind(str(mount.host_path), mount.container_path, mount.readonly, is_file=mount.is_file)
    for mask in request.masks:
        dest = q(root + mask.container_path)
        if mask.folder:
            lines.append(f"mount -t tmpfs -o ro,mode=0555,nosuid,nodev masked {dest}")
        else:
            lines.append(f"[ -e {dest} ] || : > {dest}")
            source = q(str(mask.source) if mask.source else "/dev/null")
            lines.append(f"mount --bind {source} {dest}")
            lines.append(f"mount -o remount,bind,ro,nosuid,nodev {dest}")
    environment = sandbox_env(request) if env is None else env
    home = q(root + environment.get("HOME", SANDBOX_HOME))
    lines.append(f"mkdir -p {home}")
    if os.geteuid() == 0:
        lines.append(f"chown {request.user.uid}:{request.user.gid} {home}")
    for name, value in environment.items():
        lines.append(f"export {name}={q(value)}")
    user = request.user
    change = (
        f"--reuid={user.uid} --regid={user.gid} --clear-groups "
        if os.geteuid() == 0 and user.uid != 0
        else ""
    )
    lines.append(
        f"exec chroot {q(root)} setpriv {change}--no-new-privs --inh-caps=-all "
        f'--bounding-set=-all -- /bin/sh -c \'cd {WORKDIR} && exec "$@"\' sh "$@"'
    )
    return NamespaceScript("\n".join(lines) + "\n")
