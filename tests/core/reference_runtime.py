"""A reference runtime on util-linux ``unshare``, and deliberately broken variants of it.

The meta-tests run the contract suite against each variant and expect it to fail: a
contract suite that passes a broken runtime checks nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc

BREAKAGES = {
    "writable-mounts": "read-only mounts shown read-write",
    "only-workspace": "only /workspace/group is mounted",
    "secrets-in-argv": "the sandbox's env and the ContainerInput passed on the command line",
    "no-network-namespace": "no network namespace, and the host's environment passed in",
    "no-pid-namespace": "no pid namespace (the host's processes are visible)",
    "ignores-timeout": "the run's timeout is ignored",
    "no-masks": "masks not applied while 'masks' is declared",
    "shared-tmp": "the host's /tmp shown in the sandbox",
    "runs-as-root": "the sandbox acts as root on host files",
    "holds-blocks": "stdout held back until the run ends",
    "exit-zero": "every run reported as exit status 0",
    "input-left-on-disk": "the ContainerInput (secrets included) left in the state folder",
}
"""Each breakage, and what it breaks."""

CAUGHT_BY = {
    "writable-mounts": {"test_contract_mounts_have_their_modes"},
    "only-workspace": {"test_contract_mounts_have_their_modes"},
    "secrets-in-argv": {"test_secrets_never_reach_argv_logs_or_files"},
    "no-network-namespace": {
        "test_network_isolation",
        "test_host_environment_does_not_reach_the_sandbox",
    },
    "no-pid-namespace": {"test_pid_isolation"},
    "ignores-timeout": {"test_timeout_without_output_is_an_error_and_leaves_nothing_running"},
    "no-masks": {"test_config_json_is_read_only_inside", "test_project_env_is_masked_for_main"},
    "shared-tmp": {"test_filesystem_isolation"},
    "runs-as-root": {"test_files_left_behind_are_not_privileged"},
    "holds-blocks": {"test_blocks_stream_before_the_run_ends"},
    "exit-zero": {"test_command_exit_status_passes_through"},
    "input-left-on-disk": {"test_secrets_never_reach_argv_logs_or_files"},
}
"""The contract tests that must fail for each breakage (others may fail too)."""


class _Holding(nc.OutputSink):
    """Keeps everything until the run ends (a runtime that does not stream)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_output(self, output: nc.ContainerOutput) -> None:
        self.calls.append(("on_output", output))

    def on_stdout(self, data: bytes) -> None:
        self.calls.append(("on_stdout", data))

    def on_stderr(self, data: bytes) -> None:
        self.calls.append(("on_stderr", data))

    def on_problem(self, message: str) -> None:
        self.calls.append(("on_problem", message))


class Reference:
    """The reference runtime; ``breakage`` (a key of :data:`BREAKAGES`) breaks one promise."""

    def __init__(self, breakage: str | None = None) -> None:
        if breakage is not None and breakage not in BREAKAGES:
            raise ValueError(f"unknown breakage {breakage!r}")
        self.breakage = breakage

    @nc.hookimpl
    def engine_status(self, settings: None) -> nc.EngineStatus:
        """Declares every isolation property (the broken variants too)."""
        return nc.EngineStatus(
            available=True,
            engine="unshare",
            isolation=frozenset({"filesystem", "pid", "network", "masks"}),
        )

    @nc.hookimpl
    def execute(self, request: nc.ExecuteRequest[None]) -> nc.ExecutionResult:
        """Run in fresh namespaces, broken as asked."""
        b = self.breakage
        if b == "writable-mounts":
            mounts = tuple(m.replace(readonly=False) for m in request.mounts)
            request = request.replace(mounts=mounts)
        elif b == "only-workspace":
            mounts = tuple(m for m in request.mounts if m.container_path == "/workspace/group")
            request = request.replace(mounts=mounts)
        elif b == "no-masks":
            request = request.replace(masks=())
        elif b == "runs-as-root":
            request = request.replace(user=nc.SandboxUser(uid=0, gid=0, source="broken"))
        command = list(request.command or nc.agent_command(request))
        if b == "secrets-in-argv":
            words = [f"{k}={v}" for k, v in request.env.items()]
            given = request.input_json().decode() if request.input is not None else "-"
            command = ["sh", "-c", 'shift; exec env "$@"', given, *words, *command]
        if b == "input-left-on-disk" and request.input is not None:
            folder = nc.state_folder(request)
            (folder / "input.json").write_bytes(request.input_json())
        extra = [nc.example_agent_mount()]
        if b == "shared-tmp":
            extra.append(nc.Mount(host_path=Path("/tmp"), container_path="/tmp", readonly=False))
        namespaces = ["--mount", "--pid", "--fork", "--net", "--kill-child"]
        if b == "no-network-namespace":
            namespaces.remove("--net")
        if b == "no-pid-namespace":
            namespaces.remove("--pid")
            namespaces.remove("--kill-child")
        with nc.namespace_setup_script(request, mounts=extra) as setup:
            argv = ["unshare", *nc.unshare_user_flags(), *namespaces, *setup.shell, *command]
            stdin = request.input_json() if request.input is not None else None
            sink = _Holding() if b == "holds-blocks" else request.sink
            result = nc.run_process(
                argv,
                timeout_ms=10**9 if b == "ignores-timeout" else request.timeout_ms,
                sink=sink,
                agent_mode=request.input is not None,
                stdin=stdin,
                env=dict(os.environ) if b == "no-network-namespace" else None,
                pass_fds=setup.fds,
                grace_s=1.0,
            )
        if isinstance(sink, _Holding):
            for method, value in sink.calls:
                getattr(request.sink, method)(value)
        if b == "exit-zero":
            result = result.replace(exit_code=0)
        return result

    @nc.hookimpl
    def reset(self, request: nc.GroupRequest[None]) -> list[str]:
        """Removes the state folder."""
        return nc.reset_state(request)

    @nc.hookimpl
    def stats(self, request: nc.StatsRequest[None]) -> list[nc.StatsRow]:
        """Keeps nothing worth reporting."""
        return []
