"""The ``unshare`` runtime: each run in fresh mount, pid, network (and user) namespaces."""

import nanoclaw_runtimes_core as nc

NAMESPACES = ["--mount", "--pid", "--fork", "--net", "--kill-child"]


@nc.hookimpl
def engine_status(settings: None) -> nc.EngineStatus:
    """Available when ``unshare`` can make the namespaces here (a quick trial run)."""
    argv = ["unshare", *nc.unshare_user_flags(), *NAMESPACES, "true"]
    try:
        trial = nc.run_process(argv, timeout_ms=5000, sink=nc.OutputSink(), agent_mode=False)
        available, detail = trial.exit_code == 0, trial.stderr_tail.strip()
    except FileNotFoundError:
        available, detail = False, "unshare is not installed"
    return nc.EngineStatus(
        available=available,
        engine="unshare",
        detail=detail or "fresh mount, pid and network namespaces per run",
        fix="apt-get install util-linux; sysctl kernel.unprivileged_userns_clone=1",
        isolation=frozenset({"filesystem", "pid", "network", "masks"}),
    )


@nc.hookimpl
def execute(request: nc.ExecuteRequest[None]) -> nc.ExecutionResult:
    """Run the command, or the group's agent (the example agent by default), in the sandbox."""
    command = list(request.command or nc.agent_command(request))
    with nc.namespace_setup_script(request, mounts=[nc.example_agent_mount()]) as setup:
        return nc.run_process(
            ["unshare", *nc.unshare_user_flags(), *NAMESPACES, *setup.shell, *command],
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            agent_mode=request.input is not None,
            stdin=request.input_json() if request.input is not None else None,
            pass_fds=setup.fds,
            grace_s=1.0,  # pid 1 of the namespace ignores SIGTERM: kill it soon after
        )
