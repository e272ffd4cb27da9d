"""Executions through the vibe stand-in: results, statuses, mounts, secrets, timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.errors import ConfigError, UserError
from nanoclaw_runtimes_core.models import ContainerInput

from .conftest import VIBE_STANDIN, Collect, VibeProject, needs_bwrap

pytestmark = needs_bwrap


def ask(vp: VibeProject, folder: str, prompt: str, *, secrets=None, timeout_ms=None, sink=None):
    inp = ContainerInput(
        prompt=prompt, group_folder=folder, chat_jid="chat@g.us", is_main=False, secrets=secrets
    )
    return vp.runtimes().execute(folder, input=inp, sink=sink or Collect(), timeout_ms=timeout_ms)


def answer(result) -> dict:
    return json.loads(result.outputs[0].result)


def test_result_and_status_come_back_through_the_console(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    sink = Collect()
    result = ask(vproject, "dev", "hello there", sink=sink)
    assert result.status == "success", result.error_message()
    assert result.exit_code == 0
    assert len(result.outputs) == 2 and len(sink.outputs) == 2
    got = answer(result)
    assert got["prompt"] == "hello there" and got["group"] == "dev"
    assert got["cwd"] == "/workspace/group" and got["stdin_is_file"] is True
    assert result.outputs[1].new_session_id == "s-1"
    assert not sink.problems  # the echoed script never looked like a block


def test_non_zero_script_status_is_read_back(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    result = ask(vproject, "dev", "fail exit 3")
    assert result.exit_code == 3  # vibe itself exited 0
    assert result.status == "error"
    assert len(result.outputs) == 2


def test_guest_stopping_without_status_is_an_error(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    result = ask(vproject, "dev", "poweroff")
    assert result.status == "error"
    assert "the guest stopped before the script reported its exit status" in result.error


def test_state_persists_per_group_and_reset_clears_it(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    vproject.group("other")
    assert answer(ask(vproject, "dev", "persist"))["runs"] == 1
    assert answer(ask(vproject, "dev", "persist"))["runs"] == 2
    assert answer(ask(vproject, "other", "persist"))["runs"] == 1  # its own disk
    removed = vproject.runtimes().reset("dev")
    assert any("dev.raw" in line for line in removed)
    assert not (vproject.images / "dev.raw").exists()
    assert answer(ask(vproject, "dev", "persist"))["runs"] == 1
    assert answer(ask(vproject, "other", "persist"))["runs"] == 2


def test_no_default_mounts_secrets_not_in_argv_run_folder_removed(
    vproject: VibeProject,
) -> None:
    vproject.base()
    vproject.group("dev")
    result = ask(vproject, "dev", "hi", secrets={"ANTHROPIC_API_KEY": "sk-very-secret-123"})
    assert result.status == "success"
    assert answer(result)["secret_names"] == ["ANTHROPIC_API_KEY"]  # delivered in the file
    (boot,) = [b for b in vproject.boots() if b["event"] == "start"]
    assert boot["no_default_mounts"] is True and boot["default_mounts"] == []
    assert "--no-default-mounts" in boot["argv"]
    assert not any(".claude" in m["host"] and "sessions" not in m["host"] for m in boot["mounts"])
    assert "sk-very-secret-123" not in json.dumps(boot["argv"])
    guests = {m["guest"]: m for m in boot["mounts"]}
    run = guests["/nanoclaw/run"]
    assert run["read_only"] is True
    assert not Path(run["host"]).exists()  # deleted after the run
    assert guests["/workspace/group"]["read_only"] is False
    if sys.platform.startswith("linux") and Path("/dev/shm").is_dir():
        assert run["host"].startswith("/dev/shm/")
    for log in (vproject.root / "groups" / "dev" / "logs").glob("*"):
        assert "sk-very-secret-123" not in log.read_text()


def test_timeout_kills_vibe_and_its_vm(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    result = ask(vproject, "dev", "sleep 120", timeout_ms=4000)
    assert result.timed_out and result.status == "error"
    assert result.error_message() == "Container timed out after 4000 ms"
    (boot,) = [b for b in vproject.boots() if b["event"] == "start"]
    with pytest.raises(ProcessLookupError):
        os.kill(boot["pid"], 0)
    run_dir = next(m["host"] for m in boot["mounts"] if m["guest"] == "/nanoclaw/run")
    leftovers = subprocess.run(["pgrep", "-f", run_dir], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""  # no bwrap guest left either
    assert not Path(run_dir).exists()


def test_command_mode_passes_only_the_command_output(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    sink = Collect()
    result = vproject.runtimes().execute(
        "dev",
        command=["sh", "-c", 'printf "%s\\n" "$1"; exit 4', "x", 'it\'s "quoted" $HOME'],
        sink=sink,
    )
    assert result.exit_code == 4
    assert sink.stdout.decode() == 'it\'s "quoted" $HOME\n'


def test_debug_shows_the_raw_console(vproject: VibeProject, capfd: pytest.CaptureFixture) -> None:
    vproject.base()
    vproject.group("dev")
    vproject.env["VIBE_DEBUG"] = "1"
    assert ask(vproject, "dev", "hi").status == "success"
    err = capfd.readouterr().err
    assert "VIBE_SCRIPT_EOF" in err and "vibe login" in err


def test_missing_base_says_how_to_make_one(vproject: VibeProject) -> None:
    vproject.group("dev")
    with pytest.raises(UserError) as info:
        ask(vproject, "dev", "hi")
    text = str(info.value.cause if hasattr(info.value, "cause") else info.value)
    assert "prepare --base vibe" in text and "base.raw" in text
    assert not (vproject.images / "dev.raw").exists()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("{not json", ["config.json"]),
        ({"containerConfig": {"vibeImage": "../../etc/passwd"}}, ["vibeImage"]),
        ({"containerConfig": {"cpus": 0}}, ["cpus"]),
        ({"containerConfig": {"engine": "docker"}}, ["engine"]),
    ],
)
def test_corrupt_config_is_a_clear_error(vproject: VibeProject, config, words) -> None:
    vproject.base()
    path = vproject.group("dev")
    if isinstance(config, str):
        (path / "config.json").write_text(config)
    else:
        (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as info:
        ask(vproject, "dev", "hi")
    for word in words:
        assert word in str(info.value)
    assert not (vproject.images / "dev.raw").exists()


def test_vibe_failure_is_named(vproject: VibeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    from nanoclaw_runtime_vibe import vibe_engine

    vproject.base()
    vproject.group("dev")
    real = vibe_engine.vibe_argv
    monkeypatch.setattr(vibe_engine, "vibe_argv", lambda *a, **k: [*real(*a, **k), "--bogus"])
    result = ask(vproject, "dev", "hi")
    assert result.status == "error"
    assert "vibe failed (exit 1" in result.error and "UnexpectedOption" in result.error


def test_standin_refuses_a_script_with_its_terminator(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 2**20)
    script = tmp_path / "s.sh"
    script.write_text("echo VIBE_SCRIPT_EOF\n")
    env = {**os.environ, "VIBE_STANDIN_STATE": str(tmp_path / "state")}
    with pytest.raises(subprocess.TimeoutExpired) as info:  # like vibe, it then idles forever
        subprocess.run(
            [str(VIBE_STANDIN), "--no-default-mounts", "--script", str(script), str(disk)],
            capture_output=True,
            timeout=5,
            env=env,
        )
    assert b"contains marker 'VIBE_SCRIPT_EOF'" in (info.value.stderr or b"")
