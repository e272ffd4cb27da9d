"""Docker and Podman, for real, through the ``nanoclaw-runtimes`` command: the same suite on both.

Every test bounds its own time (each CLI call has a timeout), and the ``project`` fixture
fails a test that leaves a container of its project behind.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from nanoclaw_runtimes_core.testing.processes import ArgvWatch

from .helpers import (
    AGENT_IMAGE,
    EngineProject,
    containers,
    env_of,
    find_lines,
    our_errors,
    processes_named,
    sandbox_uid,
    text,
    tool,
    wait_for,
)

HOST_CANARY = "NC_ENGINES_HOST_CANARY"
ALLOWED = {
    "docker": {
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "DOCKER_BUILDKIT",
    },
    "podman": {
        "CONTAINERS_CONF",
        "CONTAINERS_STORAGE_CONF",
        "CONTAINERS_REGISTRIES_CONF",
        "CONTAINER_HOST",
        "CONTAINER_CONNECTION",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
    },
}


def answers(done) -> list[dict]:
    """The output blocks of an agent run's stdout."""
    blocks, inside = [], None
    for line in text(done.stdout).splitlines():
        if line == "---NANOCLAW_OUTPUT_START---":
            inside = []
        elif line == "---NANOCLAW_OUTPUT_END---" and inside is not None:
            blocks.append(json.loads("\n".join(inside)))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


# --------------------------------------------------------------------------- the agent


def test_agent_round_trip(project: EngineProject, agent_image: str) -> None:
    """The sample image's agent answers, keeps its history in the workspace, exit 0."""
    first = project.ask("dev", "hello there")
    assert first.returncode == 0, text(first.stderr)
    blocks = answers(first)
    assert blocks[0]["status"] == "success"
    assert "You said: 'hello there'" in blocks[0]["result"]
    assert "Message 1 in group 'dev'" in blocks[0]["result"]
    assert blocks[1]["result"] is None and blocks[1]["newSessionId"]
    second = project.ask("dev", "again")
    assert "Message 2 in group 'dev'" in answers(second)[0]["result"], text(second.stderr)
    history = project.root / "groups" / "dev" / ".example-agent-history"
    assert history.stat().st_uid == sandbox_uid()


def test_agent_exit_127_passes_through(project: EngineProject, agent_image: str) -> None:
    """An agent that itself exits 127 is the agent's status, not an engine error."""
    project.config("dev", agentCommand=["sh", "-c", "cat >/dev/null; exit 127"])
    done = project.ask("dev")
    assert done.returncode == 127, text(done.stderr)
    assert our_errors(done.stderr) == []


# --------------------------------------------------------------------------- exit statuses


@pytest.mark.parametrize("code", [0, 3, 125, 126, 127, 255])
def test_command_exit_status_passes_through(project: EngineProject, code: int) -> None:
    done = project.run("dev", "sh", "-c", f"echo out; exit {code}")
    assert done.returncode == code, text(done.stderr)
    assert done.stdout == b"out\n"
    assert our_errors(done.stderr) == []  # no engine error claimed


def test_missing_and_unexecutable_commands_are_127_and_126(project: EngineProject) -> None:
    """The init cannot exec the command: a shell's statuses, its own message shown once."""
    missing = project.run("dev", "no-such-command")
    assert missing.returncode == 127, text(missing.stderr)
    assert len(find_lines(missing.stderr, "No such file or directory")) == 1
    blocked = project.run("dev", "/etc/passwd")
    assert blocked.returncode == 126, text(blocked.stderr)


def test_stdout_passes_through_byte_for_byte(project: EngineProject) -> None:
    done = project.run("dev", "sh", "-c", r"printf 'a\000b\r\nno newline'")
    assert done.returncode == 0
    assert done.stdout == b"a\x00b\r\nno newline"


# --------------------------------------------------------------------------- stopping


def test_timeout_stops_a_pid1_that_ignores_sigterm_fast(project: EngineProject) -> None:
    """`sleep` has no SIGTERM handler: as PID 1 it would wait out the 15 s grace; with the
    engine's init it stops at once, and the container is gone."""
    start = time.monotonic()
    done = project.run("dev", "sleep", "300", timeout_ms=1500)
    took = time.monotonic() - start
    assert done.returncode == 124, text(done.stderr)
    assert took < 8, f"the timeout took {took:.1f} s"
    assert containers(project.engine, project.tag) == []


def test_ctrl_c_is_quick_and_leaves_nothing(project: EngineProject) -> None:
    proc = project.start("run", "dev", "--", "sleep", "300")
    try:
        assert wait_for(lambda: containers(project.engine, project.tag), 30)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert code == 130
    assert took < 6, f"Ctrl-C took {took:.1f} s"
    assert wait_for(lambda: not containers(project.engine, project.tag), 10)


def test_stop_command_ends_the_run(project: EngineProject) -> None:
    """`nanoclaw-runtimes stop NAME -t 1` (SIGTERM to the run): 143, nothing left."""
    proc = project.start("run", "--name", "engines-stop-me", "dev", "--", "sleep", "300")
    try:
        assert wait_for(lambda: containers(project.engine, project.tag), 30)
        stopped = project.cli("stop", "engines-stop-me", "-t", "1", timeout=60)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert stopped.returncode == 0, text(stopped.stderr)
    assert code == 143
    assert wait_for(lambda: not containers(project.engine, project.tag), 10)


def _killed_run(project: EngineProject) -> str:
    """Start `sleep 300`, SIGKILL the CLI once its container runs; the container's name."""
    proc = project.start("run", "dev", "--", "sleep", "300")
    try:
        names = wait_for(lambda: containers(project.engine, project.tag), 30)
        assert names, "the container never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.communicate(timeout=10)
    return names[0]


def test_sigkill_leaves_a_container_that_stats_lists_and_reset_removes(
    project: EngineProject,
) -> None:
    name = _killed_run(project)
    assert containers(project.engine, project.tag) == [name]  # it outlived its client
    stats = project.cli("stats", "--json")
    rows = json.loads(stats.stdout)
    leftovers = [r for r in rows if r["kind"] == "leftover"]
    assert [r["group"] for r in leftovers] == ["dev"], rows
    assert name in leftovers[0]["note"]
    start = time.monotonic()
    reset = project.cli("reset", "dev", "--yes")
    took = time.monotonic() - start
    assert reset.returncode == 0, text(reset.stderr)
    assert name in text(reset.stdout)
    assert took < 5, f"reset took {took:.1f} s"  # podman rm -f without -t 0 waits 10 s
    assert containers(project.engine, project.tag) == []
    again = project.cli("reset", "dev", "--yes")
    assert text(again.stdout).strip() == "nothing to remove"


def test_the_next_run_removes_what_a_killed_run_left(project: EngineProject) -> None:
    name = _killed_run(project)
    done = project.run("dev", "true")
    assert done.returncode == 0, text(done.stderr)
    assert f"removed {project.engine} container {name}" in text(done.stderr)
    assert containers(project.engine, project.tag) == []


# --------------------------------------------------------------------------- environment


def test_sandbox_env_reaches_the_container_and_no_command_line(project: EngineProject) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    project.config("dev", env=[f"API_TOKEN={secret}", "PLAIN=two words"])
    with ArgvWatch([secret]) as watch:
        done = project.run("dev", "sh", "-c", 'echo "$API_TOKEN|$PLAIN|$HOME"; sleep 1')
    assert done.returncode == 0, text(done.stderr)
    assert text(done.stdout).strip() == f"{secret}|two words|/home/node"
    assert watch.scans > 3
    assert watch.hits == []


def test_the_image_path_is_kept(project: EngineProject) -> None:
    """The sandbox's PATH is the image's own (the busybox image has only /bin)."""
    done = project.run("dev", "sh", "-c", 'echo "$PATH"')
    assert text(done.stdout).strip() == "/bin"


def test_the_client_gets_only_the_tools_variables(project: EngineProject) -> None:
    """The docker/podman process: the minimal host environment plus the tool's variables;
    neither the CLI's other variables nor the group's env."""
    project.config("dev", env=["GROUP_ONLY=group-value-1"])
    proc = project.start(
        "run", "--name", "engines-env-check", "dev", "--", "sleep", "5", HOST_CANARY="canary-9"
    )
    try:
        pids = wait_for(lambda: processes_named(project.engine, "engines-env-check"), 30)
        assert pids, "no client process seen"
        environ = env_of(pids[0])
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert code == 0
    names = {e.split(b"=", 1)[0].decode() for e in environ.split(b"\0") if e}
    assert b"canary-9" not in environ and b"group-value-1" not in environ
    variable = "DOCKER_HOST" if project.engine == "docker" else "CONTAINERS_CONF"
    assert variable in names
    assert names <= {"PATH", "LANG", *ALLOWED[project.engine]}, names


def test_a_value_with_a_line_break_is_refused_by_name(project: EngineProject) -> None:
    project.config("dev", env=["BROKEN=line1\nINJECTED=1"])
    done = project.run("dev", "true")
    assert done.returncode != 0
    assert "BROKEN" in text(done.stderr) and "line1" not in text(done.stderr)


# --------------------------------------------------------------------------- files


WRITE_PROBE = r"""
for p in /workspace/group /home/node/.claude /workspace/ipc /workspace/global /workspace/project; do
  if [ -d "$p" ]; then
    if touch "$p/.probe" 2>/dev/null; then echo "$p rw"; else echo "$p ro"; fi
  fi
done
"""


def test_the_agent_writes_exactly_its_read_write_mounts(project: EngineProject) -> None:
    done = project.run("dev", "sh", "-c", WRITE_PROBE)
    assert done.returncode == 0, text(done.stderr)
    assert text(done.stdout).split("\n")[:4] == [
        "/workspace/group rw",
        "/home/node/.claude rw",
        "/workspace/ipc rw",
        "/workspace/global ro",
    ]
    main = project.run("main", "sh", "-c", WRITE_PROBE)
    assert "/workspace/global rw" in text(main.stdout)
    assert "/workspace/project ro" in text(main.stdout)


def test_files_made_in_the_sandbox_belong_to_the_sandbox_user(project: EngineProject) -> None:
    done = project.run(
        "dev", "sh", "-c", "echo x > /workspace/group/made; mkdir /workspace/ipc/d; id -u"
    )
    assert done.returncode == 0, text(done.stderr)
    assert text(done.stdout).strip() == str(sandbox_uid())
    for path in (project.root / "groups/dev/made", project.root / "data/ipc/dev/d"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) != (0, 0)
        assert st.st_uid == sandbox_uid()


def test_masks_hold(project: EngineProject) -> None:
    """config.json read-only; for main, the project's .env empty and a secret-looking folder
    empty (Podman would copy its files into the tmpfs without notmpcopyup)."""
    (project.root / ".env").write_text("KEY=host-secret\n")
    (project.root / ".ssh").mkdir()
    (project.root / ".ssh" / "id_ed25519").write_text("private key\n")
    project.config("main")
    script = (
        "cat /workspace/project/.env; echo ENV-END; ls -A /workspace/project/.ssh; echo SSH-END;"
        " echo x > /workspace/project/.env 2>/dev/null && echo WROTE-ENV;"
        " touch /workspace/project/.ssh/new 2>/dev/null && echo WROTE-SSH;"
        " echo '{}' > /workspace/group/config.json 2>/dev/null && echo WROTE-CONFIG; true"
    )
    done = project.run("main", "sh", "-c", script)
    out = text(done.stdout)
    assert done.returncode == 0, text(done.stderr)
    assert out.startswith("ENV-END\nSSH-END\n"), out
    assert "WROTE" not in out
    assert (project.root / ".env").read_text() == "KEY=host-secret\n"


def test_no_network_no_capabilities_no_new_privileges(project: EngineProject) -> None:
    done = project.run(
        "dev",
        "sh",
        "-c",
        "ls /sys/class/net; grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status",
    )
    out = text(done.stdout).split()
    assert out[0] == "lo" and "CapBnd:" in out, out
    assert out[out.index("CapBnd:") + 1] == "0000000000000000"
    assert out[out.index("CapEff:") + 1] == "0000000000000000"
    assert out[out.index("NoNewPrivs:") + 1] == "1"


def test_limits_are_applied(project: EngineProject) -> None:
    project.config("dev", cpus=1, ram=300, pids=77)
    done = project.run(
        "dev",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/pids.max "
        "/sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max",
    )
    values = text(done.stdout).split()
    assert values[0] == "77", values
    assert values[1] == str(300 * 2**20)
    assert values[2] == "100000"  # one CPU: a quota of one period


def test_more_cpus_than_the_host_is_explained(project: EngineProject) -> None:
    """Docker refuses it (explained); Podman would accept it, so the runtime refuses it."""
    project.config("dev", cpus=256)
    done = project.run("dev", "true")
    assert done.returncode != 0
    assert "CONTAINER_CPUS" in text(done.stderr) and "at most" in text(done.stderr)


# --------------------------------------------------------------------------- the image


@pytest.mark.slow
def test_prepare_builds_the_agent_image(project: EngineProject) -> None:
    project.env["CONTAINER_IMAGE"] = AGENT_IMAGE
    built = project.cli("prepare", "--base", "container", "--force", timeout=900)
    assert built.returncode == 0, text(built.stderr)
    assert text(built.stdout).strip() == f"built image {AGENT_IMAGE} with {project.engine}"
    label = tool(
        project.engine,
        "image",
        "inspect",
        "--format",
        '{{index .Config.Labels "nanoclaw-runtimes.context"}}',
        AGENT_IMAGE,
    )
    assert len(label.stdout.strip()) == 16
    again = project.cli("prepare", "--base", "container")
    assert text(again.stdout).strip() == f"image {AGENT_IMAGE} is up to date ({project.engine})"
    # NanoClaw's own image name is never taken (a NanoClaw image, if any, is another image)
    ours = tool(project.engine, "image", "inspect", "--format", "{{.Id}}", AGENT_IMAGE)
    theirs = tool(
        project.engine, "image", "inspect", "--format", "{{.Id}}", "nanoclaw-agent:latest"
    )
    assert ours.returncode == 0 and ours.stdout.strip()
    assert theirs.returncode != 0 or theirs.stdout.strip() != ours.stdout.strip()


def test_an_unknown_image_is_explained_once(project: EngineProject) -> None:
    done = project.run("dev", "true", CONTAINER_IMAGE="nanoclaw-test/no-such-image:1")
    err = text(done.stderr)
    assert done.returncode == 1
    ours = our_errors(done.stderr)
    assert len(ours) == 1, err
    assert "nanoclaw-test/no-such-image:1 is not among" in ours[0]
    assert "prepare --base container" in ours[0]
    engine_said = {"docker": "No such image", "podman": "image not known"}[project.engine]
    assert err.count(engine_said) == 1, err  # the engine's own line, not repeated by ours


def test_a_daemon_that_is_not_there_is_explained(project: EngineProject) -> None:
    variable = {"docker": "DOCKER_HOST", "podman": "CONTAINER_HOST"}[project.engine]
    nowhere = f"unix://{project.helper.base}/no-such.sock"
    done = project.run("dev", "true", **{variable: nowhere})
    err = text(done.stderr)
    assert done.returncode == 1, err
    assert "cannot reach its" in err and "no-such.sock" in err
    doctor = project.cli("plugins", "--json", **{variable: nowhere})
    row = next(r for r in json.loads(doctor.stdout) if r["name"] == "container")
    assert row["available"] is False and row["fix"]
