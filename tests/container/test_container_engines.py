"""Docker, Podman and Apple container engines, driven through faithful stand-ins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import attrs
import pytest
from nanoclaw_runtime_container import naming, plugin
from nanoclaw_runtime_container.engines import (
    LINUX_ORDER,
    MACOS_ORDER,
    detection_order,
    make_engine,
    select_engine,
)
from nanoclaw_runtime_container.engines.apple import SERVICE_DOWN
from nanoclaw_runtime_container.settings import ContainerSettings

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.groups import resolve_group
from nanoclaw_runtimes_core.models import GroupRequest, Mount, PrepareRequest, StatsRequest

from .container_helpers import ProjectHelper, RecordingSink, Standins, processes_with, wait_until

AGENT = [sys.executable, "-m", "nanoclaw_runtimes_core.example_agent"]


def settings(engine: str, **changes: object) -> ContainerSettings:
    return attrs.evolve(ContainerSettings(engine=engine, stop_grace=1), **changes)


def mount_args(project: ProjectHelper, folder: str, engine: str) -> list[str]:
    """The mount arguments expected for a non-main group, in the contract's order."""
    root = project.root.resolve()
    table = [
        (root / "groups" / folder, "/workspace/group", False),
        (root / "groups" / "global", "/workspace/global", True),
        (root / "data" / "sessions" / folder / ".claude", "/home/node/.claude", False),
        (root / "data" / "ipc" / folder, "/workspace/ipc", False),
    ]
    args: list[str] = []
    for host, target, ro in table:
        if engine == "container":
            spec = f"type=bind,source={host},target={target}" + (",readonly" if ro else "")
            args += ["--mount", spec]
        else:
            args += ["-v", f"{host}:{target}" + (":ro" if ro else "")]
    return args


# --------------------------------------------------------------------------- exact arguments


@pytest.mark.parametrize("tool", ["docker", "podman"])
def test_docker_and_podman_arguments(project: ProjectHelper, tool: str) -> None:
    request = project.request("dev", settings=settings(tool, cpus=3, ram=1536), run_id="r1")
    name = naming.container_name("dev", project.root, "r1")
    argv = make_engine(request.settings, project.project, tool).argv(request, name)
    tag = naming.project_tag(project.root)
    assert argv == [
        tool, "run", "-i", "--rm", "--name", f"nanoclaw-dev-{tag}-r1",
        "--label", "nanoclaw.runtime=container", "--label", "nanoclaw.group=dev",
        "--label", f"nanoclaw.project={tag}",
        "--cpus", "3", "--memory", "1536m",
        *mount_args(project, "dev", tool),
        "-w", "/workspace/group", "nanoclaw-agent:latest",
    ]  # fmt: skip


def test_docker_command_mode_overrides_the_entrypoint(project: ProjectHelper) -> None:
    request = project.request(
        "dev",
        settings=settings("docker", network=False),
        command=("sh", "-c", "echo $HOME; exit 3"),
    )
    argv = make_engine(request.settings, project.project, "docker").argv(request, "n")
    assert argv[argv.index("--network") + 1] == "none"
    assert argv[-5:] == ["--entrypoint", "sh", "nanoclaw-agent:latest", "-c", "echo $HOME; exit 3"]


def test_apple_container_arguments(project: ProjectHelper) -> None:
    request = project.request("dev", settings=settings("container", cpus=4, ram=3072), run_id="abc")
    name = naming.container_name("dev", project.root, "abc")
    argv = make_engine(request.settings, project.project, "container").argv(request, name)
    assert argv == [
        "container", "run", "-i", "--rm", "--name", name,
        "-c", "4", "-m", "3072M",
        *mount_args(project, "dev", "container"),
        "-w", "/workspace/group", "nanoclaw-agent:latest",
    ]  # fmt: skip


def test_env_values_stay_off_the_command_line(
    project: ProjectHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOCLAW_TEST_TOKEN", "tok-123")
    for engine in ("docker", "container"):
        s = settings(engine, env=("NANOCLAW_TEST_TOKEN", "MODE=fast"))
        request = project.request("dev", settings=s)
        eng = make_engine(s, project.project, engine)
        argv = eng.argv(request, "n")
        assert argv[argv.index("-e") : argv.index("-e") + 2] == ["-e", "NANOCLAW_TEST_TOKEN"]
        assert "tok-123" not in argv and "MODE=fast" not in argv and "fast" not in argv
        env = eng.env(request)
        assert env["NANOCLAW_TEST_TOKEN"] == "tok-123" and env["MODE"] == "fast"


def test_docker_uses_mount_syntax_for_a_path_with_a_colon(project: ProjectHelper) -> None:
    from nanoclaw_runtime_container.engines.docker import mount_args as docker_mount

    odd = project.root / "a:b,c"
    assert docker_mount(
        Mount(host_path=odd, container_path="/workspace/extra/x", readonly=True)
    ) == ["--mount", f'type=bind,"source={odd}",target=/workspace/extra/x,readonly']


def test_apple_refuses_paths_its_mount_parser_would_cut(project: ProjectHelper) -> None:
    from nanoclaw_runtime_container.engines.apple import mount_arg

    odd = project.root / "a,b"
    odd.mkdir(parents=True)
    with pytest.raises(UserError, match="cannot mount a path holding"):
        mount_arg(Mount(host_path=odd, container_path="/workspace/extra/x", readonly=True))


# --------------------------------------------------------------------------- stand-in fidelity


def test_standins_reject_what_the_real_tools_reject(standins: Standins, tmp_path) -> None:
    bad = standins.run("docker", "run", "--bogus", "img")
    assert bad.returncode == 125 and "unknown flag: --bogus" in bad.stderr
    bad = standins.run("docker", "run", "--memory", "2048x", "img")
    assert bad.returncode == 125 and "invalid size: '2048x'" in bad.stderr
    bad = standins.run("docker", "run", "--cpus", "999", "img")
    assert bad.returncode == 125 and "Range of CPUs" in bad.stderr
    bad = standins.run("container", "run", "-c", "1.5", "img")
    assert bad.returncode == 64 and "invalid for '-c <cpus>'" in bad.stderr
    bad = standins.run("container", "run", "--label2", "x", "img")
    assert bad.returncode == 64 and "Unknown option '--label2'" in bad.stderr
    bad = standins.run(
        "container", "run", "--mount", f"type=bind,source={tmp_path}/nope,target=/x", "img"
    )
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    start = subprocess.run(
        ["container", "system", "start"], input="", capture_output=True, text=True, timeout=30
    )
    assert start.returncode == 1 and "EOF" in start.stderr


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("tool", ["docker", "podman", "container"])
def test_prepare_builds_the_sample_image_then_the_agent_answers(
    project: ProjectHelper, standins: Standins, tool: str
) -> None:
    s = settings(tool)
    summary = plugin.prepare(request=PrepareRequest(project=project.project, settings=s))
    assert summary == f"built image nanoclaw-agent:latest with {tool}"
    again = plugin.prepare(request=PrepareRequest(project=project.project, settings=s))
    assert "is present" in again
    sink = RecordingSink()
    request = project.request("dev", settings=s, prompt="ping from test", sink=sink)
    result = plugin.execute(request=request)
    assert result.status == "success", (result, bytes(sink.stderr))
    assert "ping from test" in (sink.outputs[0].result or "")
    assert standins.containers(tool) == []  # --rm


def test_exit_status_of_the_agent_passes_through(
    project: ProjectHelper, standins: Standins
) -> None:
    standins.add_image("docker", "nanoclaw-agent:latest", AGENT)
    sink = RecordingSink()
    request = project.request(
        "dev",
        settings=settings("docker"),
        sink=sink,
        command=("sh", "-c", "echo out-text; echo err-text >&2; exit 3"),
    )
    result = plugin.execute(request=request)
    assert result.exit_code == 3 and result.error is None
    assert result.error_message() == "Container exited with code 3: err-text"
    assert sink.text == "out-text\n"


@pytest.mark.parametrize(
    ("command", "code", "says"),
    [
        (("no-such-command-xyz",), 127, "was not found in the container (exit 127)"),
        (("{not_executable}",), 126, "cannot be invoked (exit 126)"),
    ],
)
def test_126_and_127_are_the_engines(
    project: ProjectHelper, standins: Standins, command: tuple[str, ...], code: int, says: str
) -> None:
    standins.add_image("docker", "nanoclaw-agent:latest", AGENT)
    plain_file = project.root / "plain-file"
    plain_file.write_text("not a program\n")
    command = tuple(c.format(not_executable=plain_file) for c in command)
    result = plugin.execute(
        request=project.request("dev", settings=settings("docker"), command=command)
    )
    assert result.exit_code == code
    assert says in (result.error or "") and command[0] in (result.error or "")


def test_125_carries_the_engines_message(project: ProjectHelper, standins: Standins) -> None:
    result = plugin.execute(request=project.request("dev", settings=settings("docker")))
    assert result.exit_code == 125
    assert result.error is not None
    assert result.error.startswith("docker could not run the container (exit 125): ")
    assert "pull access denied for nanoclaw-agent" in result.error


def test_missing_daemon_is_reported_plainly(project: ProjectHelper, standins: Standins) -> None:
    standins.set_down("docker")
    status = plugin.engine_status(settings=settings("docker"))
    assert not status.available
    assert "docker is installed but its daemon is not running" in status.detail
    assert "systemctl start docker" in status.fix or "Docker Desktop" in status.fix
    result = plugin.execute(request=project.request("dev", settings=settings("docker")))
    assert result.exit_code == 125
    assert "Is the docker daemon running?" in (result.error or "")


def test_apple_service_down_says_how_to_start_it(
    project: ProjectHelper, standins: Standins
) -> None:
    standins.set_down("container")
    status = plugin.engine_status(settings=settings("container"))
    assert not status.available
    assert "container system start --enable-kernel-install" in status.fix
    result = plugin.execute(request=project.request("dev", settings=settings("container")))
    assert result.status == "error" and result.error == SERVICE_DOWN
    standins.set_down("container", False)
    assert plugin.engine_status(settings=settings("container")).available


@pytest.mark.parametrize("tool", ["docker", "container"])
def test_timeout_stops_then_kills(
    project: ProjectHelper, standins: Standins, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The container ignores SIGTERM and (docker) the daemon's stop hangs, then fails:
    # only the kill that follows can end it.
    monkeypatch.setenv("DOCKER_STANDIN_STOP_HANGS", "1")
    standins.add_image(tool, "nanoclaw-agent:latest", AGENT)
    marker = f"{os.getpid() % 1000 + 1000}.{time.monotonic_ns() % 10**6}"
    sink = RecordingSink()
    request = project.request(
        "dev",
        settings=settings(tool),
        timeout_ms=1500,
        sink=sink,
        run_id="t1",
        command=("sh", "-c", f"trap '' TERM; echo started; sleep {marker}; sleep {marker}"),
    )
    result = plugin.execute(request=request)
    assert result.timed_out and "started" in sink.text
    name = naming.container_name("dev", project.root, "t1")
    calls = [c[1:] for c in standins.calls(tool) if c[1] in ("stop", "kill")]
    assert calls[0] == ["stop", "-t", "1", name]
    assert ["kill", name] in calls
    assert wait_until(lambda: not processes_with(marker), 15), processes_with(marker)


def test_ctrl_c_removes_the_container(project: ProjectHelper, standins: Standins) -> None:
    import threading

    standins.add_image("docker", "nanoclaw-agent:latest", AGENT)
    marker = f"{os.getpid() % 1000 + 2000}.{time.monotonic_ns() % 10**6}"
    sink = RecordingSink()
    request = project.request(
        "dev",
        settings=settings("docker"),
        sink=sink,
        command=("sh", "-c", f"echo started; sleep {marker}"),
    )
    timer = threading.Timer(
        0.1,
        lambda: (
            wait_until(lambda: b"started" in sink.stdout, 20)
            and os.kill(os.getpid(), signal.SIGINT)
        ),
    )
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        plugin.execute(request=request)
    timer.join()
    assert wait_until(lambda: not processes_with(marker), 15), processes_with(marker)
    assert standins.containers("docker") == []


# --------------------------------------------------------------------------- leftovers


def leak(standins: Standins, tool: str, name: str, labels: dict[str, str], marker: str) -> None:
    """Start a container and SIGKILL its client, as a crashed host would: the container stays."""
    args = [tool, "run", "-i", "--rm", "--name", name]
    if tool != "container":
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
    args += ["nanoclaw-agent:latest", "sleep", marker]
    client = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    # Wait for the container's own process, not the client whose arguments also hold the marker.
    def container_running() -> bool:
        return any(p.split(": ", 1)[1].startswith("sleep ") for p in processes_with(marker))

    assert wait_until(container_running, 20)
    client.send_signal(signal.SIGKILL)
    client.wait()


@pytest.mark.parametrize("tool", ["docker", "podman", "container"])
def test_reset_sweeps_only_the_groups_leftovers(
    project: ProjectHelper, standins: Standins, tool: str
) -> None:
    standins.add_image(tool, "nanoclaw-agent:latest", [], cmd=["sh"])
    s = settings(tool)
    mine = naming.container_name("dev", project.root, "crashed1")
    neighbour = naming.container_name("dev-team", project.root, "crashed2")
    mark_mine, mark_other = "3001.5", "3002.5"
    leak(standins, tool, mine, naming.labels("dev", project.root), mark_mine)
    leak(standins, tool, neighbour, naming.labels("dev-team", project.root), mark_other)

    rows = plugin.stats(request=StatsRequest(project=project.project, settings=s))
    left = {(r.group, r.kind) for r in rows if r.kind == "leftover"}
    assert left == {("dev", "leftover"), ("dev-team", "leftover")}

    removed = plugin.reset(
        request=GroupRequest(project=project.project, group=project.group("dev"), settings=s)
    )
    assert len(removed) == 1 and mine in removed[0]
    assert wait_until(lambda: not processes_with(mark_mine), 15)
    assert processes_with(mark_other)  # the other group's container is untouched
    assert [c["name"] for c in standins.containers(tool)] == [neighbour]
    assert (
        plugin.reset(
            request=GroupRequest(project=project.project, group=project.group("dev"), settings=s)
        )
        == []
    )


def test_stats_reports_workspace_and_logs(project: ProjectHelper, standins: Standins) -> None:
    group = project.group("dev").path
    (group / "data.bin").write_bytes(b"x" * 300_000)
    (group / "logs").mkdir()
    (group / "logs" / "container-1.log").write_bytes(b"y" * 100_000)
    request = StatsRequest(
        project=project.project,
        settings=settings("docker"),
        groups=(resolve_group(project.project, "dev"),),
    )
    rows = plugin.stats(request=request)
    by = {(r.group, r.kind): r for r in rows}
    assert set(by) == {("dev", "workspace"), ("dev", "logs")}
    assert 0.28 < by[("dev", "workspace")].apparent_mb < 0.3
    assert 0.09 < by[("dev", "logs")].apparent_mb < 0.1


# --------------------------------------------------------------------------- auto-detection


def test_detection_order_is_documented() -> None:
    assert detection_order("darwin") == MACOS_ORDER == ("container", "docker", "podman")
    assert detection_order("linux") == LINUX_ORDER == ("bubblewrap", "podman", "docker")


def test_auto_on_macos_falls_back_when_the_service_is_down(
    project: ProjectHelper, standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    s = settings("auto")
    assert select_engine(s, project.project).name == "container"
    standins.set_down("container")
    assert select_engine(s, project.project).name == "docker"
    standins.set_down("docker")
    assert select_engine(s, project.project).name == "podman"
    standins.set_down("podman")
    with pytest.raises(EngineUnavailable) as info:
        select_engine(s, project.project)
    assert "container system start --enable-kernel-install" in str(info.value)
    status = plugin.engine_status(settings=s)
    assert not status.available and status.engine == "auto"


def test_engine_setting_is_checked() -> None:
    with pytest.raises(ValueError, match=r"must be one of \"auto\", \"container\", \"docker\""):
        ContainerSettings(engine="lxc")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        ContainerSettings(env=("BAD NAME=1",))


def test_probe_cache_recomputes_when_the_host_changes(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanoclaw_runtime_container.engines import probe_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"works": len(calls)}

    assert probe_cache.cached("p", {"boot": "a"}, compute) == {"works": 1}
    assert probe_cache.cached("p", {"boot": "a"}, compute) == {"works": 1}
    assert probe_cache.cached("p", {"boot": "b"}, compute) == {"works": 2}
    assert len(calls) == 2
    assert (tmp_path / "nanoclaw-runtimes" / "p.json").exists()
