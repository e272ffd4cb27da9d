"""The vibe runtime's hooks: a persistent Linux VM per group, booted from its own disk and
kept warm between runs."""

from __future__ import annotations

import nanoclaw_runtimes_core as nc

from . import images
from .engines import BaseBuild, RunSpec, select_engine
from .settings import VibeSettings

RUNTIME = "vibe"


@nc.hookimpl
def runtime_settings() -> type:
    """The settings class: VIBE_* variables and the group keys vibeImage, cpus, ram, keepWarm,
    engine, network."""
    return VibeSettings


@nc.hookimpl
def engine_status(settings: VibeSettings) -> nc.EngineStatus:
    """The status of the engine ``VIBE_ENGINE`` selects (vibe, or qemu on Linux)."""
    return select_engine(settings).status(settings)


@nc.hookimpl
def prepare(request: nc.PrepareRequest[VibeSettings]) -> str | None:
    """Group: clone its disk from its base on first use (and sweep what killed runs left).
    Base (no group): build the base."""
    project, settings = request.project, request.settings
    if request.group is not None:
        return images.ensure_group_disk(
            project, settings, request.group.folder, progress=request.progress
        )
    target = images.base_path(project, settings)
    with images.base_build_lock(project, target):
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


@nc.hookimpl
def execute(request: nc.ExecuteRequest[VibeSettings]) -> nc.ExecutionResult:
    """Run the agent (or command) in the group's VM, warm or freshly booted."""
    settings = request.settings
    engine = select_engine(settings)
    disk = images.group_disk(request.project, settings, request.group.folder)
    base = images.base_path(request.project, settings)
    agent = request.agent_command or images.default_agent(base)
    spec = RunSpec(
        project=request.project,
        group=request.group,
        disk=disk,
        base=base,
        mounts=request.mounts,
        masks=request.masks,
        cpus=settings.cpus,
        ram_mb=settings.ram,
        network=settings.network,
        env=nc.sandbox_env(request, home="/root"),
        input=request.input_json() if request.input is not None else None,
        command=request.command,
        agent=tuple(agent),
        keep_warm_ms=settings.keep_warm,
        boot_key=images.boot_key(request, settings, engine.name),
        run_name=request.run_name,
        run_folder=nc.runs_dir() / request.run_name,
        user=request.user,
        timeout_ms=request.timeout_ms,
        debug=request.debug or settings.debug,
    )
    return engine.run(spec, settings=settings, sink=request.sink)


@nc.hookimpl
def reset(request: nc.GroupRequest[VibeSettings]) -> list[str]:
    """Power off the group's warm VM, then (scope ``all``) delete its disk; the group lock is
    held, so no run uses it."""
    engine = select_engine(request.settings)
    removed = engine.stop_warm(request.project, request.group.folder, request.settings)
    if request.scope == "warm":
        return removed
    return removed + images.reset_group_disk(
        request.project, request.settings, request.group.folder
    )


@nc.hookimpl
def stats(request: nc.StatsRequest[VibeSettings]) -> list[nc.StatsRow]:
    """Every image (group disks, bases, leftovers of killed clones and builds) and every warm VM."""
    rows = images.image_stats(request.project, request.settings, request.groups)
    engine = select_engine(request.settings)
    import time

    now = time.time()
    for vm in engine.warm_vms(request.project, request.settings):
        rows.append(
            nc.StatsRow(
                runtime=RUNTIME,
                group=vm.group,
                kind="warm-vm",
                path=str(vm.folder),
                note=(
                    f"{vm.engine} VM booted, idle; "
                    f"powers off in {max(0, vm.idle_until - now):.0f} s"
                ),
                details={
                    "pid": vm.pid,
                    "ageSeconds": round(now - vm.started, 1),
                    "idleSecondsLeft": round(max(0.0, vm.idle_until - now), 1),
                    "memoryMB": round(vm.memory_mb, 1),
                },
            )
        )
    return rows
