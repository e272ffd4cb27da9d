"""nanoclaw-runtimes: per-group sandboxes for NanoClaw agents, chosen by runtime plugins.

This package is the one module a runtime imports::

    import nanoclaw_runtimes_core as nc

    @nc.settings_class
    class MySettings:
        cpus: int = nc.setting(2, env="MINE_CPUS", key="cpus", validator=nc.between(1, 64),
                               help="CPUs of the sandbox.")

    @nc.hookimpl
    def runtime_settings() -> type:
        return MySettings

    @nc.hookimpl
    def execute(request: nc.ExecuteRequest[MySettings]) -> nc.ExecutionResult:
        return nc.run_process([...], timeout_ms=request.timeout_ms, sink=request.sink, ...)

A host uses :class:`Runtimes`. Names load on first use, so that
``python -m nanoclaw_runtimes_core.example_agent`` inside a sandbox needs nothing
but the standard library, and a run imports only what it uses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs a launch more than all of this
if TYPE_CHECKING:
    from typing import Any

    from .dispatch import Runtimes
    from .errors import (
        ConfigError,
        EngineUnavailable,
        ExitStatus,
        NoSpace,
        PluginError,
        RuntimeFailure,
        UserError,
    )
    from .hookspecs import PROJECT_NAME, hookimpl, hookspec
    from .limits import LimitPlan
    from .locks import FileLock, OwnerLock, lock_fd, owner_alive
    from .models import (
        ISOLATION_FILESYSTEM,
        ISOLATION_MASKS,
        ISOLATION_NETWORK,
        ISOLATION_PID,
        ContainerInput,
        ContainerOutput,
        EngineStatus,
        ExecuteRequest,
        ExecutionResult,
        Group,
        GroupRequest,
        Limits,
        Mask,
        Mount,
        OutputSink,
        PrepareRequest,
        Project,
        SandboxUser,
        StatsRequest,
        StatsRow,
    )
    from .process import (
        HOST_ENV,
        RunOutput,
        exit_status,
        find_program,
        host_env,
        pid_running,
        resident_mb,
        run_process,
    )
    from .protocol import OUTPUT_END, OUTPUT_START, MarkerDecoder, encode_output
    from .record import Record
    from .runs import runs_dir
    from .safefs import SafeDir, UnsafeEntry, disk_usage, remove_tree
    from .sandbox import (
        EXAMPLE_AGENT,
        SANDBOX_HOME,
        SANDBOX_PATH,
        WORKDIR,
        agent_command,
        example_agent_file,
        example_agent_mount,
        host_limits,
        namespace_setup_script,
        reset_state,
        sandbox_env,
        state_folder,
        state_row,
        unshare_user_flags,
    )
    from .settings import (
        at_least,
        between,
        command_words,
        env_entries,
        image_reference,
        non_empty,
        one_of,
        plain_file_name,
        setting,
        settings_class,
    )
    from .tools import ToolResult, run_tool

_EXPORTS: dict[str, str] = {
    "Runtimes": "dispatch",
    **dict.fromkeys(
        (
            "ConfigError",
            "EngineUnavailable",
            "ExitStatus",
            "NoSpace",
            "PluginError",
            "RuntimeFailure",
            "UserError",
        ),
        "errors",
    ),
    **dict.fromkeys(("PROJECT_NAME", "hookimpl", "hookspec"), "hookspecs"),
    "LimitPlan": "limits",
    **dict.fromkeys(("FileLock", "OwnerLock", "lock_fd", "owner_alive"), "locks"),
    **dict.fromkeys(
        (
            "ISOLATION_FILESYSTEM",
            "ISOLATION_MASKS",
            "ISOLATION_NETWORK",
            "ISOLATION_PID",
            "ContainerInput",
            "ContainerOutput",
            "EngineStatus",
            "ExecuteRequest",
            "ExecutionResult",
            "Group",
            "GroupRequest",
            "Limits",
            "Mask",
            "Mount",
            "OutputSink",
            "PrepareRequest",
            "Project",
            "SandboxUser",
            "StatsRequest",
            "StatsRow",
        ),
        "models",
    ),
    **dict.fromkeys(
        (
            "HOST_ENV",
            "RunOutput",
            "exit_status",
            "find_program",
            "host_env",
            "pid_running",
            "resident_mb",
            "run_process",
        ),
        "process",
    ),
    **dict.fromkeys(("OUTPUT_END", "OUTPUT_START", "MarkerDecoder", "encode_output"), "protocol"),
    "Record": "record",
    "runs_dir": "runs",
    **dict.fromkeys(("SafeDir", "UnsafeEntry", "disk_usage", "remove_tree"), "safefs"),
    **dict.fromkeys(("ToolResult", "run_tool"), "tools"),
    **dict.fromkeys(
        (
            "EXAMPLE_AGENT",
            "SANDBOX_HOME",
            "SANDBOX_PATH",
            "WORKDIR",
            "agent_command",
            "example_agent_file",
            "example_agent_mount",
            "host_limits",
            "namespace_setup_script",
            "reset_state",
            "sandbox_env",
            "state_folder",
            "state_row",
            "unshare_user_flags",
        ),
        "sandbox",
    ),
    **dict.fromkeys(
        (
            "at_least",
            "between",
            "command_words",
            "env_entries",
            "image_reference",
            "non_empty",
            "one_of",
            "plain_file_name",
            "setting",
            "settings_class",
        ),
        "settings",
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
