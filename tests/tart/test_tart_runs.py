"""Runs through nc.Runtimes on the tart stand-in: the agent's round trip, statuses, the guest's
view (shares, environment), and secrets that never reach an argv or a file."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from conftest import BASE, TartLab, wait_for

SECRET = "sk-ant-do-not-leak-7f3a9c"
ENV_SECRET = "env-api-key-3b8e1d"


def test_agent_round_trip_streams_blocks_and_leaves_nothing(lab: TartLab) -> None:
    result, sink = lab.run("g1", "ok")
    assert result.exit_code == 0 and result.status == "success", result
    assert [o.result for o in result.outputs] == ["hello g1", None]
    assert result.new_session_id == "session-2"
    assert b"some log line outside the blocks" in sink.stdout
    assert [o.result for o in sink.outputs] == ["hello g1", None]
    calls = lab.calls()
    clone = next(a for a in calls if a[0] == "clone" and a[1] == BASE)
    name = clone[2]
    assert name.startswith("nanoclaw-nc-g1-")
    assert ["set", name, "--cpu", "4", "--memory", "8192"] in calls
    run = next(a for a in calls if a[0] == "run")
    assert {"--no-graphics", "--no-audio", "--no-clipboard"} <= set(run)
    order = [a[0] for a in calls if a[0] in ("clone", "set", "run", "delete") and name in a]
    assert order == ["clone", "set", "run", "delete"]
    assert any(a[:3] == ["exec", "-i", name] for a in calls)
    lab.assert_clean()


def test_the_example_agent_is_the_default(lab: TartLab, monkeypatch) -> None:
    monkeypatch.delenv("CONTAINER_AGENT_COMMAND")
    result, _ = lab.run("g1", "hi there")
    assert result.exit_code == 0, (result, result.stderr)
    assert "You said: 'hi there'" in (result.outputs[0].result or "")
    assert (lab.root / "groups" / "g1" / ".example-agent-history").read_text() == "1"
    lab.assert_clean()


def test_exit_status_passes_through(lab: TartLab) -> None:
    result, _ = lab.run("g1", "fail")
    assert result.exit_code == 3 and result.status == "error"
    assert "agent: something broke" in result.stderr_tail
    assert "Container exited with code 3" in (result.error_message() or "")
    lab.assert_clean()


def test_a_guest_program_killed_by_a_signal_is_reported(lab: TartLab) -> None:
    result, _ = lab.run("g1", "signal")
    assert result.exit_code == 255
    assert [o.result for o in result.outputs] == ["about to die"]
    assert "killed by a signal" in (result.error or "")
    lab.assert_clean()


def test_command_mode_runs_in_the_workspace_share(lab: TartLab) -> None:
    lab.group("g1")
    sink = __import__("conftest").RecordingSink()
    result = lab.runtimes().execute(
        "g1",
        command=("/bin/sh", "-c", 'pwd; echo "$HOME $USER"; echo to-err >&2; exit 4'),
        sink=sink,
    )
    assert result.exit_code == 4
    lines = sink.stdout.decode().splitlines()
    assert lines == ["/Volumes/My Shared Files/group", "/Users/admin admin"]
    assert b"to-err" in sink.stderr
    lab.assert_clean()


def test_shares_hold_their_modes_and_the_agent_learns_their_paths(lab: TartLab) -> None:
    result, _ = lab.run("g1", "env")
    seen = json.loads(result.outputs[0].result or "{}")
    env = seen["env"]
    assert seen["cwd"] == "/Volumes/My Shared Files/group"
    assert env["NANOCLAW_GROUP_DIR"] == "/Volumes/My Shared Files/group"
    assert env["CLAUDE_CONFIG_DIR"] == "/Volumes/My Shared Files/claude"
    mounts = json.loads(env["NANOCLAW_MOUNTS"])
    assert set(mounts) == {
        "/workspace/group",
        "/workspace/global",
        "/home/node/.claude",
        "/workspace/ipc",
    }
    # A non-main group's global folder is read-only, its workspace writable: the guest enforces it.
    result, _ = lab.run("g1", "write:/Volumes/My Shared Files/global/planted")
    assert result.outputs[0].result == "refused: Read-only file system"
    assert not (lab.root / "groups" / "global" / "planted").exists()
    result, _ = lab.run("g1", "write:/Volumes/My Shared Files/group/note.txt")
    assert result.outputs[0].result == "written"
    assert (lab.root / "groups" / "g1" / "note.txt").read_text() == "written by the agent"
    lab.assert_clean()


def test_the_guest_sees_no_host_environment_and_its_own_home(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("HOST_ONLY_VARIABLE", "host-value-91c2")
    lab.group("g1", {"env": ["GROUP_VAR=group-value", "TZ=Europe/Paris"]})
    result, _ = lab.run("g1", "env")
    seen = json.loads(result.outputs[0].result or "{}")
    env = seen["env"]
    assert "HOST_ONLY_VARIABLE" not in env
    assert not [k for k in env if k.startswith("TART_")], env
    assert "host-value-91c2" not in json.dumps(env)
    assert env["GROUP_VAR"] == "group-value" and env["TZ"] == "Europe/Paris"
    assert env["HOME"] == "/Users/admin" and env["USER"] == "admin"
    assert env["PATH"].startswith("/opt/homebrew/bin:")
    if os.getuid() != 0:
        assert seen["uid"] == 501  # the guest agent's user, admin
    lab.assert_clean()


def test_env_values_with_any_bytes_reach_the_agent_intact(lab: TartLab) -> None:
    tricky = "line one\nline two\n\n  spaced  $HOME `x` 'q' \"d\" \\ end\n"
    lab.group("g1", {"env": [f"TRICKY={tricky}", "EMPTY="]})
    result, _ = lab.run("g1", "env")
    env = json.loads(result.outputs[0].result or "{}")["env"]
    assert env["TRICKY"] == tricky
    assert env["EMPTY"] == ""
    lab.assert_clean()


def _argv_and_environ_of_live_processes() -> list[bytes]:
    """Every process's argv; and the environment of every host process (the stand-in's guest
    processes, in a pid namespace of their own, are the VM's and may hold the group's env)."""
    found = []
    ours = os.readlink("/proc/self/ns/pid")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes())
                if os.readlink(entry / "ns" / "pid") == ours:
                    found.append((entry / "environ").read_bytes())
    return found


def test_secrets_and_env_never_in_an_argv_or_a_file(lab: TartLab) -> None:
    lab.group("g1", {"env": [f"API_KEY={ENV_SECRET}"]})
    seen: list[bytes] = []
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            seen.extend(_argv_and_environ_of_live_processes())

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        result, _ = lab.run("g1", "sleep:1", secrets={"API_KEY": SECRET})
        assert result.exit_code == 0
        result, _ = lab.run("g1", "secret", secrets={"API_KEY": SECRET})
        env_result, _ = lab.run("g1", "env")
    finally:
        stop.set()
        scanner.join(timeout=10)
    assert result.outputs[0].result == f"got 1 secret(s), API_KEY length {len(SECRET)}"
    assert json.loads(env_result.outputs[0].result or "{}")["env"]["API_KEY"] == ENV_SECRET
    assert seen, "the scanner saw no process"
    for cmdline in seen:  # argv and environments
        assert SECRET.encode() not in cmdline and ENV_SECRET.encode() not in cmdline
    for argv in lab.calls():
        assert not any(SECRET in a or ENV_SECRET in a for a in argv), argv
    for folder in (lab.home, lab.state, lab.root / "data"):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert SECRET.encode() not in data and ENV_SECRET.encode() not in data, path
    lab.assert_clean()


def test_masks_tart_cannot_apply_are_named_for_the_main_group(lab: TartLab) -> None:
    (lab.root / ".env").write_text("SOMETHING=1\n")
    lab.group("main")
    sink = __import__("conftest").RecordingSink()
    inp = lab.input("main", "ok")
    inp = type(inp)(prompt="ok", group_folder="main", chat_jid="m@g.us", is_main=True)
    result = lab.runtimes().execute("main", input=inp, sink=sink)
    assert result.exit_code == 0, result
    assert any("cannot hide" in p and "/workspace/project/.env" in p for p in sink.problems)
    lab.assert_clean()


def test_a_clone_failure_is_an_error_result_and_leaves_nothing(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_BASE_IMAGE", "no-such-base")
    result, _ = lab.run("g1", "ok")
    assert result.status == "error"
    assert 'the specified VM "no-such-base" does not exist' in (result.error or "")
    lab.assert_clean()


def test_a_guest_agent_that_never_answers_is_a_clear_error(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_STANDIN_NO_AGENT", "1")
    monkeypatch.setenv("TART_BOOT_TIMEOUT", "1500")
    result, _ = lab.run("g1", "ok")
    assert result.status == "error"
    assert "did not answer within 2 s" in (result.error or "") or "within 1 s" in (
        result.error or ""
    ), result.error
    assert "TART_BOOT_TIMEOUT" in (result.error or "")
    lab.assert_clean()


def test_runs_of_two_groups_at_once_both_succeed(lab: TartLab) -> None:
    results: dict[str, object] = {}

    def go(folder: str) -> None:
        results[folder] = lab.run(folder, "sleep:1")[0]

    threads = [threading.Thread(target=go, args=(f,)) for f in ("a1", "a2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    wait_for(lambda: len(results) == 2, 5)
    assert all(r.exit_code == 0 for r in results.values()), results  # type: ignore[attr-defined]
    lab.assert_clean()
