"""Executions through the tart runtime against the stand-in: results, cleanup on every path."""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
from pathlib import Path

import pytest
from nanoclaw_runtime_tart import plugin
from nanoclaw_runtime_tart.settings import TartSettings
from tart_harness import SECRET, assert_no_vms, calls, events, pid_alive, wait_for

from nanoclaw_runtimes_core.errors import UserError


def test_success_streams_blocks_and_leaves_no_vm(state, request_for):
    request = request_for(prompt="ok")
    result = plugin.execute(request=request)
    assert result.exit_code == 0 and result.status == "success", result
    assert [o.result for o in result.outputs] == ["hello g1", None]
    assert result.outputs[1].new_session_id == "session-2"
    assert [o.result for o in request.sink.outputs] == ["hello g1", None]
    assert_no_vms(state)
    argvs = calls(state)
    clone = next(a for a in argvs if a[0] == "clone")
    name = clone[2]
    assert name.startswith("nanoclaw-g1-") and name.endswith(f"-pid{os.getpid()}")
    assert clone[1] == TartSettings().base_image
    assert ["set", name, "--cpu", "4", "--memory", "8192"] in argvs
    run = next(a for a in argvs if a[0] == "run")
    assert {"--no-graphics", "--no-audio", "--no-clipboard"} <= set(run)
    exec_call = next(a for a in argvs if a[:2] == ["exec", "-i"])
    assert exec_call[2] == name
    # Order of the lifecycle: clone, set, run, exec, stop, delete.
    order = [a[0] for a in argvs if a[0] in ("clone", "set", "run", "stop", "delete")]
    assert order == ["clone", "set", "run", "stop", "delete"]


def test_mounts_become_dir_shares_with_read_only_and_guest_paths(state, request_for, root):
    result = plugin.execute(request=request_for(prompt="env"))
    assert result.exit_code == 0, result
    seen = json.loads(result.outputs[0].result)
    # The agent ran in the group workspace (reached through the guest's share).
    assert Path(seen["cwd"]).resolve() == (root / "groups" / "g1").resolve()
    mounts = json.loads(seen["env"]["NANOCLAW_MOUNTS"])
    assert set(mounts) == {
        "/workspace/group",
        "/workspace/global",
        "/home/node/.claude",
        "/workspace/ipc",
    }
    assert (
        Path(seen["real"]["CLAUDE_CONFIG_DIR"])
        == (root / "data" / "sessions" / "g1" / ".claude").resolve()
    )
    start = next(e for e in events(state) if e["event"] == "start")
    dirs = {d["name"]: d for d in start["dirs"]}
    assert dirs["group"]["readOnly"] is False
    assert dirs["global"]["readOnly"] is True
    assert dirs["ipc"]["readOnly"] is False
    assert Path(dirs["global"]["path"]) == root / "groups" / "global"
    # Guest paths the runtime announced are those tart gives macOS guests.
    exec_call = next(a for a in calls(state) if a[:2] == ["exec", "-i"])
    assert "NANOCLAW_GROUP_DIR=/Volumes/My Shared Files/group" in exec_call


def test_agent_failure_returns_status_and_stderr_and_leaves_no_vm(state, request_for):
    result = plugin.execute(request=request_for(prompt="fail"))
    assert result.exit_code == 3
    assert result.status == "error"
    assert "agent: something broke" in result.stderr_tail
    assert [o.result for o in result.outputs] == ["partial"]
    assert "Container exited with code 3" in result.error_message()
    assert_no_vms(state)


def test_timeout_without_output_stops_agent_and_vm(state, request_for, root):
    result = plugin.execute(request=request_for(prompt="hang", timeout_ms=2000))
    assert result.timed_out and result.status == "error"
    assert result.error_message() == "Container timed out after 2000 ms"
    pid = int((root / "groups" / "g1" / "agent.pid").read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10)
    assert_no_vms(state)


def test_idle_timeout_after_output_is_success(state, request_for):
    result = plugin.execute(request=request_for(prompt="hang-after-output", timeout_ms=2000))
    assert result.timed_out and result.status == "success"
    assert [o.result for o in result.outputs] == ["before going quiet"]
    assert_no_vms(state)


def test_command_mode_passes_stdout_and_exit_status(state, request_for, root):
    request = request_for(command=("sh", "-c", "pwd -P; echo to-err >&2; exit 4"))
    result = plugin.execute(request=request)
    assert result.exit_code == 4
    assert Path(request.sink.stdout.decode().strip()) == (root / "groups" / "g1").resolve()
    assert b"to-err" in request.sink.stderr
    exec_call = next(a for a in calls(state) if a[0] == "exec" and a[-1].startswith("pwd -P"))
    assert "-i" not in exec_call[:3]  # no stdin attached in command mode
    assert_no_vms(state)


def test_secrets_only_on_stdin(state, request_for, root, slots):
    result = plugin.execute(request=request_for(prompt="secret", secrets={"API_KEY": SECRET}))
    assert result.outputs[0].result == f"got 1 secret(s), API_KEY length {len(SECRET)}"
    for argv in calls(state):
        assert not any(SECRET in arg for arg in argv), argv
    for folder in (state, root, slots):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), path
    assert_no_vms(state)


def test_boot_timeout_is_a_clear_error_and_leaves_no_vm(state, request_for, settings, monkeypatch):
    monkeypatch.setenv("TART_STANDIN_NO_AGENT", "1")
    quick = TartSettings(**{**_fields(settings), "boot_timeout_ms": 1500})
    result = plugin.execute(request=request_for(prompt="ok", settings=quick))
    assert result.status == "error"
    assert "did not answer within 1500 ms" in result.error
    assert "TART_BOOT_TIMEOUT" in result.error
    assert_no_vms(state)


def test_missing_local_base_is_an_error_result(state, request_for, settings):
    bad = TartSettings(**{**_fields(settings), "base_image": "no-such-base"})
    result = plugin.execute(request=request_for(prompt="ok", settings=bad))
    assert result.status == "error"
    assert 'the specified VM "no-such-base" does not exist' in result.error
    assert_no_vms(state)


def test_keyboard_interrupt_mid_run_cleans_up(state, request_for, root):
    pid_file = root / "groups" / "g1" / "agent.pid"

    def interrupt_when_agent_runs() -> None:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_agent_runs, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        plugin.execute(request=request_for(prompt="hang"))
    pid = int(pid_file.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10)
    assert_no_vms(state)


def test_ssh_access_is_refused_plainly(state, request_for, settings):
    ssh = TartSettings(**{**_fields(settings), "access": "ssh"})
    with pytest.raises(UserError, match="TART_ACCESS='ssh' is not implemented"):
        plugin.execute(request=request_for(prompt="ok", settings=ssh))


def _fields(settings: TartSettings) -> dict:
    import attrs

    return attrs.asdict(settings, recurse=False)
