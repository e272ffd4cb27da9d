"""The ``container`` runtime's hooks: ephemeral sandboxes on bubblewrap, Docker, Podman or
Apple's ``container``. Nothing persists between runs except what the mounts hold."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from nanoclaw_runtimes_core import hookimpl
from nanoclaw_runtimes_core.errors import EngineUnavailable
from nanoclaw_runtimes_core.models import EngineStatus, StatsRow
from nanoclaw_runtimes_core.process import run_streaming

from . import naming, usage
from .engines import combined_status, select_engine
from .settings import ContainerSettings

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.models import (
        ExecuteRequest,
        ExecutionResult,
        GroupRequest,
        PrepareRequest,
        StatsRequest,
    )

#: Extra seconds the engine's own `stop -t GRACE` may take before its client is killed.
STOP_MARGIN_S = 10


@hookimpl
def runtime_settings() -> type:
    """The settings class: engine, image, cpus, ram, timeout, network, env, agent command."""
    return ContainerSettings


@hookimpl
def engine_status(settings: ContainerSettings) -> EngineStatus:
    """The configured engine's status, or the first usable one when ``engine`` is auto."""
    try:
        return combined_status(settings)
    except Exception as exc:  # the hook must report, never raise
        return EngineStatus(available=False, engine=settings.engine, detail=str(exc))


@hookimpl
def prepare(request: PrepareRequest) -> str | None:
    """A group needs only its workspace; the base is the engine's image (built or pulled),
    or for bubblewrap a trial sandbox proving it works."""
    if request.group is not None:
        request.group.path.mkdir(parents=True, exist_ok=True)
        return None
    engine = select_engine(request.settings, request.project)
    return engine.prepare_base(request)


@hookimpl
def execute(request: ExecuteRequest) -> ExecutionResult:
    """Run the agent (ContainerInput on stdin) or the command in a fresh, named container.

    Output blocks stream to the sink as they arrive. On timeout the container is
    stopped with a grace period, then killed; on Ctrl-C, SIGTERM (as an exception)
    or any error it is killed before the exception goes on.
    """
    settings: ContainerSettings = request.settings
    engine = select_engine(settings, request.project)
    name = naming.container_name(request.group.folder, request.project.root, request.run_id)
    argv = engine.argv(request, name)
    if request.debug:
        request.sink.on_stderr(f"+ {shlex.join(argv)}\n".encode())
    stdin = request.input_json() if request.input is not None else b""
    grace = settings.stop_grace + (0 if engine.name == "bubblewrap" else STOP_MARGIN_S)
    try:
        result = run_streaming(
            argv,
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            stdin=stdin,
            env=engine.env(request),
            passthrough=request.command is not None,
            stop=lambda: engine.stop(name),
            grace_s=grace,
            die_with_parent=engine.die_with_parent,
            on_start=lambda proc: engine.started(name, proc),
        )
    except FileNotFoundError:
        raise EngineUnavailable(
            f"{argv[0]} is not installed (CONTAINER_ENGINE={settings.engine}); run "
            "`nanoclaw-runtimes doctor` to see what this host offers."
        ) from None
    except BaseException:
        engine.kill(name)
        raise
    if result.timed_out:
        engine.kill(name)  # in case the graceful stop did not finish
    return result.to_result(error=engine.explain_exit(result.exit_code, result.stderr_tail))


@hookimpl
def reset(request: GroupRequest) -> list[str]:
    """Remove the group's leftover containers (an engine-side sweep); the workspace stays."""
    engine = select_engine(request.settings, request.project)
    return engine.sweep(request.group.folder)


@hookimpl
def stats(request: StatsRequest) -> list[StatsRow]:
    """Each group's workspace and logs (all an ephemeral runtime keeps), and any leftover
    container of the project the engine still knows."""
    rows: list[StatsRow] = []
    for group in request.groups:
        folder = group.path
        work = usage.measure(folder, skip=frozenset({"logs"}))
        logs = usage.measure(folder / "logs")
        for kind, found, path in (("workspace", work, folder), ("logs", logs, folder / "logs")):
            rows.append(
                StatsRow(
                    runtime=naming.RUNTIME_NAME,
                    group=group.folder,
                    kind=kind,
                    path=str(path),
                    apparent_mb=round(found.apparent / usage.MB, 3),
                    allocated_mb=round(found.allocated / usage.MB, 3),
                    modified=found.modified,
                )
            )
    try:
        engine = select_engine(request.settings, request.project)
        left = engine.leftovers(None)
    except EngineUnavailable:
        return rows
    pattern = naming.name_pattern(request.project.root)
    for name in left:
        match = pattern.fullmatch(name)
        rows.append(
            StatsRow(
                runtime=naming.RUNTIME_NAME,
                group=match.group("group") if match else None,
                kind="leftover",
                note=f"{engine.name} container {name} "
                "(remove it with `nanoclaw-runtimes reset GROUP`)",
            )
        )
    return rows
