"""The ``local`` runtime: the agent (or a command) runs as a plain process of this host.

THERE IS NO ISOLATION, and it declares none. The process sees the host's whole file system and
network, as the sandbox user (your user; when run as root, the unprivileged
``NANOCLAW_SANDBOX_USER``). Use it to develop agents and runtimes, never for groups whose
messages you do not trust.

What it does keep apart is small: the environment is the sandbox's own (nothing of the host's),
each group gets its own ``HOME`` and ``TMPDIR`` in its state folder
(``data/runtimes/local/{folder}``: ``reset`` deletes it, ``stats`` measures it), and the
working directory is the group's workspace (``groups/{folder}``, which sandboxes show as
``/workspace/group``). The other contract mounts are not remapped: paths such as
``/workspace/global`` do not exist for a local process.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import nanoclaw_runtimes_core as nc


@nc.settings_class
class LocalSettings:
    """Settings of the ``local`` runtime."""

    nice: int = nc.setting(
        0,
        env="LOCAL_NICE",
        key="localNice",
        validator=nc.between(0, 19),
        help="Run the group's processes at this lower CPU priority (0 normal, 19 lowest).",
    )


def _state(request: nc.ExecuteRequest[LocalSettings] | nc.PrepareRequest[LocalSettings]) -> Path:
    """The group's HOME and TMPDIR, created for the sandbox user."""
    assert request.state_dir is not None
    for sub in ("", "home", "tmp"):
        folder = request.state_dir / sub
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        user = getattr(request, "user", None)
        if user is not None and os.geteuid() == 0:
            os.chown(folder, user.uid, user.gid)
    return request.state_dir


@nc.hookimpl
def runtime_settings() -> type:
    """``LOCAL_NICE`` / ``containerConfig.localNice``."""
    return LocalSettings


@nc.hookimpl
def engine_status(settings: LocalSettings) -> nc.EngineStatus:
    """Always available: the engine is this host's own process table. Isolates nothing."""
    return nc.EngineStatus(
        available=True,
        engine="local process",
        version=f"Python {platform.python_version()}",
        detail="no isolation: runs on this host as the sandbox user (for development)",
    )


@nc.hookimpl
def execute(request: nc.ExecuteRequest[LocalSettings]) -> nc.ExecutionResult:
    """Run the agent (ContainerInput on stdin) or the command, in the group's workspace."""
    state = _state(request)
    if request.command is not None:
        argv = list(request.command)
    elif request.agent_command:
        argv = list(request.agent_command)
    else:
        argv = [sys.executable, str(nc.example_agent_file())]
    if request.settings.nice:
        argv = ["nice", "-n", str(request.settings.nice), *argv]
    env = nc.sandbox_env(request, home=str(state / "home"))
    env["TMPDIR"] = str(state / "tmp")
    try:
        return nc.run_process(
            argv,
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            agent_mode=request.input is not None,
            stdin=request.input_json() if request.input is not None else None,
            env=env,
            cwd=request.group.path,
            user=request.user,
            grace_s=5.0,
        )
    except (FileNotFoundError, PermissionError) as exc:
        # What a shell would say; 127 and 126 are the statuses Docker uses too.
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"{argv[0]}: {'command not found' if code == 127 else 'permission denied'}\n"
        request.sink.on_stderr(message.encode())
        return nc.ExecutionResult(
            exit_code=code, stderr_tail=message, timeout_ms=request.timeout_ms
        )


@nc.hookimpl
def reset(request: nc.GroupRequest[LocalSettings]) -> list[str]:
    """Delete the group's HOME and TMPDIR (never its workspace)."""
    return nc.reset_state(request)


@nc.hookimpl
def stats(request: nc.StatsRequest[LocalSettings]) -> list[nc.StatsRow]:
    """One row per group with local state: its size and last change."""
    rows = []
    base = request.project.data_dir / "runtimes" / "local"
    for group in request.groups:
        row = nc.state_row("local", group.folder, base / group.folder)
        if row is not None:
            rows.append(row)
    return rows
