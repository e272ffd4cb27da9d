"""The hooks a runtime plugin implements.

A runtime is a module (or object) registered under the entry-point group
``nanoclaw_runtimes``; the entry point's name is the runtime's name::

    [project.entry-points.nanoclaw_runtimes]
    vibe = "nanoclaw_runtime_vibe.plugin"

The dispatcher calls the hooks of the ONE runtime selected for a group, never
all runtimes at once, so every hook below behaves like ``firstresult``: the
selected runtime's return value is the result. Every argument is passed by
keyword; a hookimpl may accept only the arguments it needs, so new arguments
can be added without breaking existing plugins.

An exception raised by a hook reaches the user wrapped in
:class:`~nanoclaw_runtimes_core.errors.RuntimeFailure`, which names the runtime
and its distribution. Raise :class:`~nanoclaw_runtimes_core.errors.UserError`
(or a subclass) for problems the user can fix; its message is shown as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .models import (
        EngineStatus,
        ExecuteRequest,
        ExecutionResult,
        GroupRequest,
        PrepareRequest,
        StatsRequest,
        StatsRow,
    )

PROJECT_NAME = "nanoclaw_runtimes"
"""The pluggy project name, which is also the entry-point group."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def runtime_settings() -> type:
    """Return the attrs class that holds this runtime's settings.

    Called once when the runtime is loaded. Declare each field with
    :func:`nanoclaw_runtimes_core.settings.setting`, naming the environment
    variable (``VIBE_CPUS``) and, where a group may override it, the
    ``containerConfig`` key (``cpus``, ``vibeImage``). The core resolves every
    field as: group ``config.json`` > process environment > ``.env`` in the
    project root > the field's default, with strict types and errors that name
    the file and key. The resolved instance is what the other hooks receive as
    ``request.settings``.

    Optional: a runtime with no settings need not implement it.
    """


@hookspec(firstresult=True)
def engine_status(settings: Any) -> EngineStatus:
    """Tell whether this runtime's engine can run on this host.

    Called by ``doctor``, ``plugins`` and auto-detection (to pick a default
    runtime), so it must be quick (well under a second) and must not start
    anything. Return :class:`~nanoclaw_runtimes_core.models.EngineStatus` with
    ``available=False`` and a ``fix`` (e.g. the install command) when the engine
    is missing. Do not raise for a missing engine.
    """


@hookspec(firstresult=True)
def prepare(request: PrepareRequest) -> str | None:
    """Make a group ready to run, or build the runtime's base (image, VM, root file system).

    ``request.group`` is set for ``prepare GROUP`` and before the first
    execution of a group; it is None for ``prepare --base RUNTIME``. Must be
    idempotent: preparing a prepared group does nothing. Report progress on long
    work through ``request.progress(message, fraction_or_None)``. Whatever is
    interrupted must leave the previous state intact (write under a temporary
    name, then rename). Return a one-line summary of what was done, or None.
    Raise :class:`~nanoclaw_runtimes_core.errors.UserError` when a prerequisite
    is missing, saying how to make it.
    """


@hookspec(firstresult=True)
def execute(request: ExecuteRequest) -> ExecutionResult:
    """Run one execution in the group's sandbox and return its result.

    Called with the group's lock held (no two executions of one group overlap)
    and within the concurrency bound. ``request.mounts`` are the validated
    mounts of the NanoClaw contract; ``request.input`` (agent mode) is written
    to the agent's stdin, or ``request.command`` (command mode) is run with
    ``/workspace/group`` as the working directory. Stream every output block to
    ``request.sink`` as it arrives, apply ``request.timeout_ms`` as an idle
    timeout reset by each block, and leave nothing running on any exit path
    (success, failure, timeout, exception, KeyboardInterrupt).
    :func:`nanoclaw_runtimes_core.process.run_streaming` does all of this for a
    command line. Return :class:`~nanoclaw_runtimes_core.models.ExecutionResult`;
    a failing agent is a result with a non-zero ``exit_code``, not an exception.
    """


@hookspec(firstresult=True)
def reset(request: GroupRequest) -> list[str]:
    """Throw away the state this runtime keeps for one group.

    Waits for a running execution of the group (the caller holds the group
    lock). Returns a list of what was removed, one short line each (an empty
    list when there was nothing). Never touches another group's state.
    """


@hookspec(firstresult=True)
def stats(request: StatsRequest) -> list[StatsRow]:
    """Report what this runtime keeps, per group and for its shared bases.

    Return one :class:`~nanoclaw_runtimes_core.models.StatsRow` per thing kept
    (a group's disk image, a base image, a leftover VM), with apparent and
    allocated sizes in MB. Must be cheap: it runs over every group.
    """
