"""Runs on bubblewrap through the dispatcher: agent mode, command mode, prepare, stats, status."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from nanoclaw_runtime_container.engines import bubblewrap, bwrap_host

import nanoclaw_runtimes_core as nc

from .helpers import SANDBOX_UID, TestProject

MARK = "---NANOCLAW_OUTPUT_"  # in halves, so a command line never holds the whole marker


def block(text: str) -> str:
    """Shell printing one output block whose result is ``text`` (no quotes in it)."""
    return (
        f'printf \'%s\\n\' \'{MARK}START---\' \'{{"status":"success","result":"{text}"}}\' '
        f"'{MARK}END---'"
    )


def test_example_agent_answers_with_two_blocks(project: TestProject) -> None:
    result, sink = project.agent("dev", "ping")
    assert result.exit_code == 0, sink.err
    assert result.status == "success"
    assert [o.status for o in sink.outputs] == ["success", "success"]
    assert "You said: 'ping'" in (sink.outputs[0].result or "")
    assert "group 'dev'" in (sink.outputs[0].result or "")
    assert sink.outputs[1].result is None and sink.outputs[1].new_session_id
    # The agent's history lives in the workspace, so it persists across runs.
    again, sink2 = project.agent("dev", "pong")
    assert "Message 2" in (sink2.outputs[0].result or ""), sink2.err
    assert again.new_session_id


def test_blocks_are_streamed_and_the_agent_status_passes_through(project: TestProject) -> None:
    script = f"cat >/dev/null; {block('first')}; sleep 1.5; {block('second')}; exit 3"
    project.config("dev", agentCommand=["sh", "-c", script])
    started = time.monotonic()
    result, sink = project.agent("dev")
    ended = time.monotonic()
    assert [o.result for o in sink.outputs] == ["first", "second"], sink.err
    assert sink.output_times[0] - started < ended - started - 1.0, "first block not streamed"
    assert result.exit_code == 3
    assert result.status == "error"
    assert result.output_count == 2


def test_the_container_input_reaches_the_agent_on_stdin(project: TestProject) -> None:
    project.config("dev", agentCommand=["sh", "-c", "cat > /workspace/group/input.json"])
    result, sink = project.agent("dev", "on stdin", secrets={"API_KEY": "sk-test-1234"})
    assert result.exit_code == 0, sink.err
    data = json.loads((project.root / "groups/dev/input.json").read_text())
    assert data["prompt"] == "on stdin"
    assert data["groupFolder"] == "dev"
    assert data["secrets"] == {"API_KEY": "sk-test-1234"}  # secrets travel on stdin


def test_command_stdout_is_byte_exact_and_the_status_passes_through(project: TestProject) -> None:
    payload = bytes(range(256)) * 40 + b"no newline at the end"
    (project.root / "groups/dev/payload.bin").write_bytes(payload)
    result, sink = project.sh("dev", "cat payload.bin; exit 7")
    assert bytes(sink.stdout) == payload
    assert result.exit_code == 7
    assert result.stdout == payload


def test_command_runs_in_the_group_workspace_as_node(project: TestProject) -> None:
    result, sink = project.sh("dev", 'echo "$(pwd) $(id -un) $(id -u) $HOME"')
    assert result.exit_code == 0, sink.err
    assert sink.text == "/workspace/group node 1000 /home/node\n"


def test_a_missing_command_exits_127_with_bwraps_line(project: TestProject) -> None:
    result, sink = project.command("dev", "no-such-program-here")
    assert result.status == "error" and result.exit_code == 127 and result.error is None
    assert "execvp no-such-program-here: No such file or directory" in sink.err


def test_rootfs_without_an_agent_command_is_a_clear_error(project: TestProject) -> None:
    rootfs = project.root.parent / "rootfs"
    (rootfs / "usr").mkdir(parents=True)
    with pytest.raises(
        nc.UserError, match="CONTAINER_ROOTFS is set but the group has no agentCommand"
    ):
        project.agent("dev", CONTAINER_ROOTFS=str(rootfs))


def test_rootfs_replaces_the_host_userland(project: TestProject) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (scripts/setup.sh installs busybox-static)")
    rootfs = project.root.parent / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for tool in ("sh", "cat", "ls", "id"):
        os.symlink("busybox", rootfs / "bin" / tool)
    (rootfs / "etc" / "rootfs-marker").write_text("from the rootfs\n")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    result, sink = project.command(
        "dev",
        "/bin/sh",
        "-c",
        "cat /etc/rootfs-marker; ls /; id -un",
        CONTAINER_ROOTFS=str(rootfs),
    )
    assert result.exit_code == 0, sink.err
    lines = sink.text.splitlines()
    assert lines[0] == "from the rootfs"
    assert "usr" not in lines[1:-1]  # the host's userland is not shown
    assert lines[-1] == "node"  # the rootfs's own passwd is shown over


def test_the_interpreter_prefix_runs_the_agent_without_system_python(
    project: TestProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap_host, "SYSTEM_PYTHON", "/nonexistent/python3")
    agent = bubblewrap.default_agent(nc.Project(root=project.root), None)
    assert agent.command[0] != "/usr/bin/python3" and agent.prefixes
    assert all(project.root not in (p, *p.parents) for p in agent.prefixes)
    result, sink = project.agent("dev", "fallback")
    assert result.exit_code == 0, sink.err
    assert "You said: 'fallback'" in (sink.outputs[0].result or "")


def test_prepare_base_runs_the_example_agent_in_a_trial_sandbox(project: TestProject) -> None:
    summary = project.runtimes().prepare(base_runtime="container")
    assert summary is not None
    assert "example agent answered" in summary
    assert f"uid {SANDBOX_UID if os.geteuid() == 0 else os.getuid()}" in summary


def test_engine_status_names_isolation_limits_and_uid(project: TestProject) -> None:
    status = project.runtimes().engine_status("container")
    assert status is not None and status.available, status
    assert status.engine == "bubblewrap"
    assert status.isolation == {"filesystem", "pid", "network", "masks"}
    uid = SANDBOX_UID if os.geteuid() == 0 else os.getuid()
    assert f"runs as uid {uid}" in status.detail
    if os.geteuid() == 0:
        assert "limits enforced: cpus, memory, processes" in status.detail


def test_stats_report_workspace_without_logs_and_logs(project: TestProject) -> None:
    result, sink = project.sh("dev", "head -c 300000 /dev/zero > big.bin")
    assert result.exit_code == 0, sink.err
    (project.root / "groups/dev/logs/extra.log").write_bytes(b"l" * 2_000_000)
    rows = [r for r in project.runtimes().stats(["container"]) if r.group == "dev"]
    kinds = {r.kind: r for r in rows}
    assert set(kinds) == {"workspace", "logs"}, rows
    logs = sum(f.stat().st_size for f in (project.root / "groups/dev/logs").iterdir())
    assert kinds["logs"].apparent_mb == pytest.approx(logs / 2**20, abs=0.01)
    # The workspace row is the workspace without its logs: big.bin and a little more.
    assert 300000 / 2**20 <= kinds["workspace"].apparent_mb < 400000 / 2**20


def test_reset_has_nothing_to_sweep(project: TestProject) -> None:
    project.sh("dev", "true")
    assert project.runtimes().reset("dev") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root could run a sandbox as root")
def test_a_request_without_a_sandbox_user_is_refused(project: TestProject) -> None:
    from nanoclaw_runtime_container import plugin

    root = nc.Project(root=project.root)
    request = nc.ExecuteRequest(
        project=root,
        group=nc.Group(folder="dev", path=project.root / "groups/dev", is_main=False),
        settings=project.runtimes().runtime_settings("container"),
        mounts=(),
        timeout_ms=10_000,
        command=("true",),
    )
    assert request.user.uid == 0
    with pytest.raises(nc.UserError, match="refusing to run a sandbox as root"):
        plugin.execute(request=request)


def test_a_missing_mount_source_is_a_clear_error(project: TestProject) -> None:
    from .helpers import run

    sandbox = bubblewrap.Sandbox(
        mounts=(nc.Mount(host_path=project.root / "gone", container_path="/w", readonly=True),),
        masks=(),
        command=("true",),
        env={},
        hostname="h",
        network=False,
        rootfs=None,
    )
    with pytest.raises(nc.UserError, match="gone cannot be shown in the sandbox at /w"):
        run(sandbox)
