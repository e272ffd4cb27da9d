"""Helpers a runtime uses to build its sandbox: environment, example agent, limits, state.

Everything here is re-exported by :mod:`nanoclaw_runtimes_core`, the one module a
runtime imports.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from .errors import UserError
from .limits import LimitPlan, plan_limits, unenforced_message
from .models import ExecuteRequest, GroupRequest, Limits, Mount, StatsRow
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
    from . import example_agent

    return Path(example_agent.__file__).resolve()


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
                f"refusing to run: {message.split('; set NANOCLAW_LIMITS')[0]} (NANOCLAW_LIMITS=strict)"
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


def namespace_setup_script(
    request: ExecuteRequest[Any], *, new_root: str, system: tuple[str, ...]
) -> str:
    """``sh`` that builds a sandbox root at ``new_root`` inside fresh mount and user
    namespaces (``unshare --user --map-root-user --mount``): the host's ``system``
    folders read-only, the contract's mounts parents first with their modes, the masks,
    ``/proc``, a private ``/tmp`` and ``/dev``, then ``chroot`` and ``cd /workspace/group``.
    It ends with ``exec chroot NEW_ROOT "$@"``: pass the command as the script's arguments.
    Paths are quoted; every bind is checked, so a mount that fails stops the run."""
    q = shlex.quote
    root = q(new_root)
    lines = ["set -eu", f"mount -t tmpfs -o mode=0755 nanoclaw {root}"]

    def bind(source: str, target: str, readonly: bool, *, is_file: bool = False) -> None:
        dest = f"{new_root}{target}"
        if is_file:
            lines.append(f"mkdir -p {q(os.path.dirname(dest))}; : > {q(dest)}")
        else:
            lines.append(f"mkdir -p {q(dest)}")
        lines.append(f"mount --rbind {q(source)} {q(dest)}")
        if readonly:
            lines.append(f"mount -o remount,bind,ro {q(dest)}")

    for folder in system:
        if os.path.isdir(folder) and not os.path.islink(folder):
            bind(folder, folder, True)
        elif os.path.islink(folder):
            lines.append(f"ln -s {q(os.readlink(folder))} {q(new_root + folder)}")
    for name in ("tmp", "dev", "proc"):
        lines.append(f"mkdir -p {root}/{name}")
    lines.append(f"mount -t tmpfs -o mode=1777 tmpfs {root}/tmp")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        bind(f"/dev/{dev}", f"/dev/{dev}", False, is_file=True)
    lines.append(f"mount -t proc proc {root}/proc")
    for mount in request.mounts:
        bind(str(mount.host_path), mount.container_path, mount.readonly, is_file=mount.is_file)
    for mask in request.masks:
        dest = q(f"{new_root}{mask.container_path}")
        if mask.folder:
            lines.append(f"mount -t tmpfs -o ro,mode=0555 masked {dest}")
        else:
            lines.append(
                f"mount --bind {q(str(mask.source) if mask.source else '/dev/null')} {dest}"
            )
            lines.append(f"mount -o remount,bind,ro {dest}")
    lines.append(f"cd {root}{WORKDIR}")
    lines.append(f'exec chroot {root} /bin/sh -c \'cd {WORKDIR} && exec "$@"\' sh "$@"')
    return "\n".join(lines) + "\n"
