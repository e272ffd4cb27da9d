"""The vibe runtime's hooks: a persistent Linux VM per group, booted from its own disk."""

from __future__ import annotations

import sys
from typing import Any

from nanoclaw_runtimes_core import hookimpl
from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.locks import group_lock
from nanoclaw_runtimes_core.models import (
    EngineStatus,
    ExecuteRequest,
    ExecutionResult,
    GroupRequest,
    PrepareRequest,
    StatsRequest,
    StatsRow,
)

from . import images
from .engines import BaseBuild, select_engine
from .run import run_in_guest
from .settings import VibeSettings


@hookimpl
def runtime_settings() -> type:
    """The settings class: VIBE_* variables and the group keys vibeImage, cpus, ram, timeout,
    engine."""
    return VibeSettings


@hookimpl
def engine_status(settings: Any) -> EngineStatus:
    """The status of the engine ``VIBE_ENGINE`` selects (vibe, or qemu on Linux)."""
    try:
        engine = select_engine(settings)
    except UserError as exc:
        return EngineStatus(
            available=False,
            engine=str(settings.engine),
            detail=str(exc),
            fix="set VIBE_ENGINE to auto, vibe or qemu",
        )
    return engine.status(settings)


@hookimpl
def prepare(request: PrepareRequest) -> str | None:
    """Group: clone its disk from its base on first use. Base (no group): build the base."""
    project, settings = request.project, request.settings
    if request.group is not None:
        base = images.base_path(project, settings)
        total = max(1, base.stat().st_blocks * 512) if base.is_file() else 1
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            request.progress(f"cloning {base.name}", min(1.0, done[0] / total))

        ensured = images.ensure_group_disk(
            project, settings, request.group.folder, progress=progress
        )
        if ensured.clone is None:
            return None
        copied = ensured.clone.bytes_copied / 2**20
        return (
            f"created {ensured.disk.name} from {ensured.base.name} by "
            f"{ensured.clone.method} ({copied:.0f} MB copied)"
        )
    target = images.base_path(project, settings)
    lock = group_lock(project, target.name, namespace="vibe-base")
    with lock:
        if target.exists() and not request.force:
            return f"{target} already exists; use --force to build it again"
        engine = select_engine(settings)
        request.progress(f"building {target.name} with the {engine.name} engine", 0.0)
        return engine.build_base(
            BaseBuild(
                target=target,
                project_root=project.root,
                progress=request.progress,
                options=request.options,
            ),
            settings=settings,
        )


@hookimpl
def execute(request: ExecuteRequest) -> ExecutionResult:
    """Boot the group's disk, run the agent (or command) once, read its status back."""
    settings = request.settings
    engine = select_engine(settings)
    ensured = images.ensure_group_disk(request.project, settings, request.group.folder)
    raw = None
    if settings.debug or request.debug:

        def raw(data: bytes) -> None:
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()

    return run_in_guest(engine, request, disk=ensured.disk, base=ensured.base, raw_stdout=raw)


@hookimpl
def reset(request: GroupRequest) -> list[str]:
    """Delete the group's disk (the caller holds the group lock, so no run is using it)."""
    return images.reset_group_disk(request.project, request.settings, request.group.folder)


@hookimpl
def stats(request: StatsRequest) -> list[StatsRow]:
    """Every image: group disks, bases and leftover partial clones, apparent and allocated MB."""
    return images.image_stats(request.project, request.settings)
