"""The hooks a runtime plugin implements.

A runtime is a module (or object) registered under the entry-point group
``nanoclaw_runtimes``; the entry point's name is the runtime's name::

    [project.entry-points.nanoclaw_runtimes]
    vibe = "nanoclaw_runtime_vibe.plugin"

The dispatcher calls the hooks of the ONE runtime selected for a group, never
all runtimes at once, so every hook behaves like ``firstresult``: the selected
runtime's return value is the result. Arguments are passed by keyword and must
be named as below; a hookimpl may accept only the arguments it needs, so new
arguments can be added without breaking existing plugins. ``execute`` is
required; every other hook is optional.

An exception raised by a hook reaches the user wrapped in
:class:`~nanoclaw_runtimes_core.errors.RuntimeFailure`, which names the runtime
and its distribution. Raise :class:`~nanoclaw_runtimes_core.errors.UserError`
(or a subclass) for problems the user can fix; its message is shown as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

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

F = TypeVar("F", bound=Callable[..., object])


class HookimplMarker:
    """``@hookimpl``: marks a function as a hook implementation, exactly as
    ``pluggy.HookimplMarker(PROJECT_NAME)`` does (the same ``nanoclaw_runtimes_impl``
    options), without importing pluggy: a run calls its runtime's hooks directly and
    needs pluggy only to explain a plugin it cannot take (see :mod:`.plugins`)."""

    __slots__ = ("project_name",)

    def __init__(self, project_name: str) -> None:
        self.project_name = project_name

    @overload
    def __call__(
        self,
        function: F,
        hookwrapper: bool = ...,
        optionalhook: bool = ...,
        tryfirst: bool = ...,
        trylast: bool = ...,
        specname: str | None = ...,
        wrapper: bool = ...,
    ) -> F: ...

    @overload
    def __call__(
        self,
        function: None = ...,
        hookwrapper: bool = ...,
        optionalhook: bool = ...,
        tryfirst: bool = ...,
        trylast: bool = ...,
        specname: str | None = ...,
        wrapper: bool = ...,
    ) -> Callable[[F], F]: ...

    def __call__(
        self,
        function: F | None = None,
        hookwrapper: bool = False,
        optionalhook: bool = False,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        wrapper: bool = False,
    ) -> F | Callable[[F], F]:
        """Mark ``function`` (or return a decorator marking one) with these options."""

        def mark(func: F) -> F:
            opts = {
                "wrapper": wrapper,
                "hookwrapper": hookwrapper,
                "optionalhook": optionalhook,
                "tryfirst": tryfirst,
                "trylast": trylast,
                "specname": specname,
            }
            setattr(func, self.project_name + "_impl", opts)
            return func

        return mark if function is None else mark(function)


class HookspecMarker:
    """``@hookspec``: marks a hook specification, as ``pluggy.HookspecMarker`` does."""

    __slots__ = ("project_name",)

    def __init__(self, project_name: str) -> None:
        self.project_name = project_name

    def __call__(
        self, function: F | None = None, firstresult: bool = False, historic: bool = False
    ) -> Any:
        """Mark ``function`` (or return a decorator marking one) as a hook specification."""

        def mark(func: F) -> F:
            opts = {
                "firstresult": firstresult,
                "historic": historic,
                "warn_on_impl": None,
                "warn_on_impl_args": None,
            }
            setattr(func, self.project_name + "_spec", opts)
            return func

        return mark if function is None else mark(function)


hookspec = HookspecMarker(PROJECT_NAME)
hookimpl = HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def runtime_settings() -> type:
    """Return the settings class of this runtime (made with ``@settings_class``).

    Called once when the runtime is loaded. Declare each field with
    :func:`nanoclaw_runtimes_core.setting`, naming the environment variable
    (``VIBE_CPUS``), the ``containerConfig`` key a group may set (``cpus``) and a
    one-sentence ``help``. The core resolves every field as: command-line
    override > group ``config.json`` > process environment > ``.env`` in the
    project root > the field's default, strictly typed, every problem reported
    with its file and key. The resolved instance is what the other hooks receive
    as ``request.settings``. A class attribute ``timeout_env = "VIBE_TIMEOUT"``
    names a variable read before ``CONTAINER_TIMEOUT`` for this runtime's groups;
    ``prepare_options`` (a settings class) declares the ``prepare --base
    --option KEY=VALUE`` options. Optional: a runtime without settings need not
    implement it.
    """


@hookspec(firstresult=True)
def engine_status(settings: Any) -> EngineStatus:
    """Tell whether this runtime's engine can run on this host, and what it isolates.

    Called by ``doctor`` and ``plugins``, before a run, and to pick a default
    runtime; keep it quick (well under a second) and start nothing. Return
    :class:`~nanoclaw_runtimes_core.models.EngineStatus` with ``available=False``
    and a ``fix`` (e.g. the install command) when the engine is missing; never
    raise for a missing engine. ``isolation`` names the optional isolation
    properties the engine enforces (``filesystem``, ``pid``, ``network``,
    ``masks``); the contract suite checks each one declared.
    """


@hookspec(firstresult=True)
def prepare(request: PrepareRequest[Any]) -> str | None:
    """Make a group ready to run, or build the runtime's base (image, VM, root file system).

    ``request.group`` is set before EVERY execution of a group (with the group's
    lock held) and for ``prepare GROUP``; it is None for ``prepare --base
    RUNTIME``. It must return quickly when there is nothing to do. Report
    progress on long work through ``request.progress(message, fraction_or_None)``.
    Whatever is interrupted must leave the previous state intact (write under a
    temporary name, then rename). Return a one-line summary of what was done, or
    None. Raise :class:`~nanoclaw_runtimes_core.errors.UserError` when a
    prerequisite is missing, saying how to make it.
    """


@hookspec(firstresult=True)
def execute(request: ExecuteRequest[Any]) -> ExecutionResult:
    """Run one execution in the group's sandbox and return its result.

    Called with the group's lock held (no two executions of one group overlap)
    and within the concurrency bound. ``request.mounts`` are the validated mounts
    of the NanoClaw contract (parents first) and ``request.masks`` the files to
    show read-only inside them; ``request.input`` (agent mode) is written to the
    agent's stdin, or ``request.command`` (command mode) is run with
    ``/workspace/group`` as the working directory. ``request.env`` goes into the
    sandbox only, never into a host process's environment. Pass the sandbox's
    stdout byte for byte to ``request.sink.on_stdout`` and each parsed block to
    ``on_output``, apply ``request.timeout_ms`` as an idle timeout reset by each
    block, act on host files as ``request.user``, keep ``request.secret_values()``
    out of every argv, and leave nothing running on any exit path (success,
    failure, timeout, exception, KeyboardInterrupt).
    :func:`nanoclaw_runtimes_core.run_process` does all of this for a command
    line. A failing agent is a result with a non-zero ``exit_code``, not an
    exception.
    """


@hookspec(firstresult=True)
def reset(request: GroupRequest[Any]) -> list[str]:
    """Throw away the state this runtime keeps for one group.

    Called with the group lock held, so no execution of the group runs. Returns
    what was removed, one short line each (an empty list when there was
    nothing). Never touches another group's state.
    """


@hookspec(firstresult=True)
def stats(request: StatsRequest[Any]) -> list[StatsRow]:
    """Report what this runtime keeps, per group and for its shared bases.

    Return one :class:`~nanoclaw_runtimes_core.models.StatsRow` per thing kept
    (a group's disk image, a base image, a warm VM, a leftover of a killed run),
    with apparent and allocated sizes in MB. Keep it cheap: it runs over every
    group.
    """
