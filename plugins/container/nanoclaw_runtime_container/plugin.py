"""The ``container`` runtime's hooks: ephemeral sandboxes on bubblewrap, Docker, Podman or
Apple's ``container``. Nothing persists between runs except what the mounts hold."""

from __future__ import annotations

from pathlib import Path

import nanoclaw_runtimes_core as nc

from .engines import combined_status, select_engine
from .settings import ContainerSettings

RUNTIME = "container"


@nc.hookimpl
def runtime_settings() -> type:
    """The settings class: engine, image, cpus, ram, pids, network, rootfs, stop grace."""
    return ContainerSettings


@nc.hookimpl
def engine_status(settings: ContainerSettings) -> nc.EngineStatus:
    """The configured engine's status, or the first usable one when ``engine`` is auto."""
    return combined_status(settings)


@nc.hookimpl
def prepare(request: nc.PrepareRequest[ContainerSettings]) -> str | None:
    """A group needs only its mounts (made by the core); the base is the engine's image
    (built or pulled), or for bubblewrap a trial sandbox proving it works."""
    if request.group is not None:
        return None
    return select_engine(request.settings).prepare_base(request)


@nc.hookimpl
def execute(request: nc.ExecuteRequest[ContainerSettings]) -> nc.ExecutionResult:
    """Run the agent (ContainerInput on stdin) or the command in a fresh, named sandbox."""
    return select_engine(request.settings).execute(request)


@nc.hookimpl
def reset(request: nc.GroupRequest[ContainerSettings]) -> list[str]:
    """Remove the group's leftover containers; the workspace stays (it is the user's). Nothing
    is kept warm, so scope ``warm`` has nothing to stop."""
    if request.scope == "warm":
        return []
    return select_engine(request.settings).sweep(request.project, request.group.folder)


@nc.hookimpl
def stats(request: nc.StatsRequest[ContainerSettings]) -> list[nc.StatsRow]:
    """Each group's workspace (without its logs) and its logs, all an ephemeral runtime keeps,
    and any leftover container of the project the engine still knows."""
    rows: list[nc.StatsRow] = []
    for group in request.groups:
        rows.append(_usage_row(group, group.path, "workspace", skip=frozenset({"logs"})))
        logs = nc.state_row(RUNTIME, group.folder, group.logs_dir, kind="logs")
        if logs is not None:
            rows.append(logs)
    try:
        engine = select_engine(request.settings)
        left = engine.leftovers(request.project)
    except nc.EngineUnavailable:
        return rows
    for leftover in left:
        rows.append(
            nc.StatsRow(
                runtime=RUNTIME,
                group=leftover.group,
                kind="leftover",
                note=f"{engine.name} container {leftover.name} "
                "(removed by the next run, or `nanoclaw-runtimes reset GROUP`)",
            )
        )
    return rows


def _usage_row(group: nc.Group, path: Path, kind: str, *, skip: frozenset[str]) -> nc.StatsRow:
    """A row for a folder's disk use, top-level names in ``skip`` left out."""
    from datetime import datetime, timezone

    usage = nc.disk_usage(path, skip=skip)
    return nc.StatsRow(
        runtime=RUNTIME,
        group=group.folder,
        kind=kind,
        path=str(path),
        apparent_mb=usage.apparent / 2**20,
        allocated_mb=usage.allocated / 2**20,
        modified=datetime.fromtimestamp(usage.modified, tz=timezone.utc)
        if usage.modified
        else None,
    )
