"""The ``local`` runtime: the agent (or a command) runs as a plain subprocess of this host.

THERE IS NO ISOLATION. The process runs as your user, sees your whole file
system and network, and inherits your environment. Use it to develop agents and
runtimes, never for groups whose messages you do not trust.

What it does keep apart is small: each group gets its own ``HOME`` and
``TMPDIR`` under ``data/local/{folder}/`` (``reset`` deletes them, ``stats``
measures them), and the working directory is the group's workspace
(``groups/{folder}``, which other runtimes show as ``/workspace/group``). The
other contract mounts are not remapped: paths such as ``/workspace/global`` do
not exist for a local process.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from nanoclaw_runtimes_core import hookimpl
from nanoclaw_runtimes_core.models import (
    EngineStatus,
    ExecuteRequest,
    ExecutionResult,
    GroupRequest,
    PrepareRequest,
    Project,
    StatsRequest,
    StatsRow,
)
from nanoclaw_runtimes_core.process import run_streaming
from nanoclaw_runtimes_core.settings import non_empty, setting

WORKSPACE = "/workspace/group"
DELETING = ".deleting-"


def _niceness(_instance: Any, _attribute: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= 19:
        raise ValueError(f"must be a niceness from 0 (normal) to 19 (lowest), got {value}")


@attrs.define(frozen=True, kw_only=True)
class LocalSettings:
    """Settings of the ``local`` runtime."""

    agent_command: str = setting(
        "",
        env="LOCAL_AGENT_COMMAND",
        help="The agent's command line (shell-style quoting); empty: the example agent "
        "of nanoclaw-runtimes-core, run by this Python.",
    )
    state_dir: str = setting(
        "./data/local",
        env="LOCAL_STATE_DIR",
        validator=non_empty,
        help="Where each group's private HOME and TMPDIR live (relative to the project root).",
    )
    nice: int = setting(
        0,
        env="LOCAL_NICE",
        key="localNice",
        validator=_niceness,
        help="Run the group's processes at this lower CPU priority (0-19).",
    )


# --------------------------------------------------------------------------- helpers


def _state_root(project: Project, settings: LocalSettings) -> Path:
    return project.resolve(settings.state_dir)


def _group_state(project: Project, settings: LocalSettings, folder: str) -> Path:
    # The core has already checked `folder` against the contract's folder rules.
    return _state_root(project, settings) / folder


def _make_state(state: Path) -> bool:
    """Create a group's HOME and TMPDIR; True when they did not exist yet."""
    created = not state.is_dir()
    for sub in ("home", "tmp"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    return created


def _agent_argv(settings: LocalSettings) -> list[str]:
    if settings.agent_command.strip():
        return shlex.split(settings.agent_command)
    return [sys.executable, "-m", "nanoclaw_runtimes_core.example_agent"]


def _workspace(request: ExecuteRequest) -> Path:
    for mount in request.mounts:
        if mount.container_path == WORKSPACE:
            return mount.host_path
    return request.group.path


def _sizes(path: Path) -> tuple[int, int, float]:
    """Apparent bytes, allocated bytes and latest modification time of a tree."""
    apparent = allocated = 0
    latest = path.lstat().st_mtime
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue  # removed while we walked
            apparent += st.st_size
            allocated += st.st_blocks * 512
            latest = max(latest, st.st_mtime)
    return apparent, allocated, latest


# --------------------------------------------------------------------------- hooks


@hookimpl
def runtime_settings() -> type:
    """``LOCAL_AGENT_COMMAND``, ``LOCAL_STATE_DIR`` and ``LOCAL_NICE`` (group key ``localNice``)."""
    return LocalSettings


@hookimpl
def engine_status(settings: LocalSettings | None) -> EngineStatus:
    """Always available: the engine is this host's own process table."""
    return EngineStatus(
        available=True,
        engine="local subprocess",
        version=f"Python {platform.python_version()}",
        detail="no isolation: runs on this host as the current user (for development)",
    )


@hookimpl
def prepare(request: PrepareRequest) -> str | None:
    """Create the group's private HOME and TMPDIR; there is no base to build."""
    if request.group is None:
        return None
    state = _group_state(request.project, request.settings, request.group.folder)
    if _make_state(state):
        return f"created {state}"
    return None


@hookimpl
def execute(request: ExecuteRequest) -> ExecutionResult:
    """Run the agent (ContainerInput on stdin) or the command, in the group's workspace."""
    settings: LocalSettings = request.settings
    state = _group_state(request.project, settings, request.group.folder)
    _make_state(state)
    if request.command is not None:
        argv, stdin, passthrough = list(request.command), None, True
    else:
        argv, stdin, passthrough = _agent_argv(settings), request.input_json(), False
    if settings.nice:
        argv = ["nice", "-n", str(settings.nice), *argv]
    env = {**os.environ, "HOME": str(state / "home"), "TMPDIR": str(state / "tmp")}
    try:
        result = run_streaming(
            argv,
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            stdin=stdin,
            env=env,
            cwd=_workspace(request),
            passthrough=passthrough,
            grace_s=5.0,
            die_with_parent=sys.platform.startswith("linux"),
        )
    except (FileNotFoundError, PermissionError) as exc:
        # What a shell would say; 127 and 126 are the statuses Docker uses too.
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"{argv[0]}: {'command not found' if code == 127 else 'permission denied'}\n"
        request.sink.on_stderr(message.encode())
        return ExecutionResult(exit_code=code, stderr_tail=message, timeout_ms=request.timeout_ms)
    return result.to_result()


@hookimpl
def reset(request: GroupRequest) -> list[str]:
    """Delete the group's HOME and TMPDIR (never its workspace)."""
    state = _group_state(request.project, request.settings, request.group.folder)
    if not state.exists():
        return []
    # Rename first: an interrupted delete never leaves a half state under the real name.
    state.rename(state.with_name(f"{DELETING}{state.name}-{uuid.uuid4().hex[:8]}"))
    # This delete, and any an earlier interruption left behind.
    for doomed in state.parent.glob(f"{DELETING}{state.name}-*"):
        shutil.rmtree(doomed, ignore_errors=True)
    return [f"local state of group {request.group.folder!r} ({state})"]


@hookimpl
def stats(request: StatsRequest) -> list[StatsRow]:
    """One row per group with local state: its size and last change."""
    root = _state_root(request.project, request.settings)
    if not root.is_dir():
        return []
    rows = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        apparent, allocated, mtime = _sizes(entry)
        rows.append(
            StatsRow(  # runtime left empty: the dispatcher fills in the name we are installed as
                group=entry.name,
                kind="state",
                path=str(entry),
                apparent_mb=apparent / 2**20,
                allocated_mb=allocated / 2**20,
                modified=datetime.fromtimestamp(mtime, tz=timezone.utc),
            )
        )
    return rows
