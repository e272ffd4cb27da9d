"""Runs through the vibe engine and the stand-in: results, statuses, separate lossless output,
the sandbox inside the guest, secrets, timeouts and vibe's own failures."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe.settings import VibeSettings
from nanoclaw_runtime_vibe.vibe_engine import VibeEngine

import nanoclaw_runtimes_core as nc

from .conftest import (
    Sink,
    VibeProject,
    answer,
    needs_bwrap,
    pids_alive,
    runs_area,
    secret_files,
    vm_area,
)

pytestmark = needs_bwrap


def test_result_blocks_stdout_and_stderr_come_back_separately(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    sink = Sink()
    result = vproject.ask("dev", "hello there", sink=sink)
    assert result.status == "success", result.error_message()
    assert result.exit_code == 0
    assert len(result.outputs) == 2 and len(sink.outputs) == 2
    got = answer(result)
    assert got["prompt"] == "hello there" and got["group"] == "dev"
    assert got["cwd"] == "/workspace/group" and got["stdin_is_file"] is True
    assert result.new_session_id == "s-1"
    assert bytes(sink.stdout) == result.stdout
    assert sink.stdout.startswith(b"\x1b[1;32magent starting\x1b[0m\n---NANOCLAW_OUTPUT_START---")
    assert b"stderr noise" not in sink.stdout and bytes(sink.stderr) == b"some stderr noise\n"
    assert b"VIBE_SCRIPT_EOF" not in sink.stdout  # the console is not a transport
    assert not sink.problems


def test_the_agents_exit_status_is_the_runs(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    result = vproject.ask("dev", "exit 3")
    assert result.exit_code == 3 and result.status == "error"
    assert len(result.outputs) == 2  # its blocks still came back
    assert vproject.boots()[-1]["event"] == "end"  # vibe itself exited 0 at power-off


def test_multi_mib_output_is_lossless(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    sink = Sink()
    result = vproject.ask("dev", "big 4", sink=sink)
    assert result.status == "success", result.error_message()
    text, digest = (o.result or "" for o in result.outputs)
    assert len(text) == 4 * 2**20 and hashlib.sha256(text.encode()).hexdigest() == digest
    assert len(sink.stdout) > 5 * 2**20
    assert bytes(sink.stdout).count(b"---NANOCLAW_OUTPUT_START---") == 2
    assert json.loads(sink.stdout.split(b"\n")[2])["result"] == text
    assert bytes(sink.stderr) == b"some stderr noise\n" + (b"noise " * 1000 + b"\n") * 64


def test_command_mode_passes_the_commands_streams(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    sink = Sink()
    result = vproject.runtimes().execute(
        "dev",
        command=[
            "sh",
            "-c",
            'printf "%s\\n" "$1"; echo to-err >&2; exit 4',
            "x",
            'it\'s "q" $HOME',
        ],
        sink=sink,
    )
    assert result.exit_code == 4
    assert bytes(sink.stdout) == b'it\'s "q" $HOME\n' and bytes(sink.stderr) == b"to-err\n"


def test_the_sandbox_in_the_guest(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev", {"containerConfig": {"cpus": 1}})
    got = answer(
        vproject.ask(
            "dev", "try /workspace/global/x try /workspace/group/config.json try /workspace/group/y"
        )
    )
    assert got["tried"]["/workspace/group/y"] == "written"
    assert got["tried"]["/workspace/global/x"] == "Read-only file system"  # a read-only mount
    assert got["tried"]["/workspace/group/config.json"] == "Read-only file system"  # the mask
    assert not (vproject.root / "groups" / "global" / "x").exists()
    assert got["uid"] == 0 and got["pid"] == 1 and len(got["pids"]) <= 3
    assert not got["shared_visible"] and not got["control_visible"]
    assert got["ifaces"] == ["lo"]  # network false: the agent's namespace has none
    assert got["env"] == ["HOME", "LANG", "LOGNAME", "PATH", "TZ", "USER"]
    written = vproject.root / "groups" / "dev" / "y"
    assert written.stat().st_uid == vproject.vm_uid  # never root's on the host
    assert answer(vproject.ask("dev", "hi", VIBE_NETWORK="true"))["ifaces"] != ["lo"]


def test_the_main_group_sees_the_project_read_only_without_its_env(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("main", {"containerConfig": {"cpus": 1}})
    (vproject.root / ".env").write_text("ANTHROPIC_API_KEY=sk-in-dotenv\n")
    inp = nc.ContainerInput(
        prompt="read /workspace/project/.env read /workspace/group/config.json "
        "try /workspace/project/x",
        group_folder="main",
        chat_jid="c@g.us",
        is_main=True,
    )
    result = vproject.runtimes().execute("main", input=inp, sink=Sink())
    got = answer(result)
    assert got["read"]["/workspace/project/.env"] == ""  # masked: shown empty
    assert json.loads(got["read"]["/workspace/group/config.json"]) == {
        "containerConfig": {"cpus": 1}
    }
    assert got["tried"]["/workspace/project/x"] == "Read-only file system"


def test_no_default_mounts_no_secrets_in_argv_or_files(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    secret = "sk-very-secret-8c1e"
    os.environ["HOST_ONLY_CANARY"] = "canary"
    try:
        result = vproject.ask("dev", "hi", secrets={"ANTHROPIC_API_KEY": secret})
    finally:
        del os.environ["HOST_ONLY_CANARY"]
    assert answer(result)["secret_names"] == ["ANTHROPIC_API_KEY"]
    (boot,) = vproject.starts()
    assert boot["no_default_mounts"] is True and "--no-default-mounts" in boot["argv"]
    assert secret not in json.dumps(boot)
    assert "HOST_ONLY_CANARY" not in boot["env"]
    assert set(boot["env"]) <= {"PATH", "LANG", "HOME", "TMPDIR", "XDG_CACHE_HOME",
                                "VIBE_STANDIN_STATE", "PWD", "SHLVL", "_"}  # fmt: skip
    guests = sorted(m["guest"] for m in boot["mounts"])
    assert guests[:2] == ["/nanoclaw/boot", "/nanoclaw/ctl"]
    assert all(g.startswith("/nanoclaw/") for g in guests)  # only ours: never ~/.claude & co.
    assert (
        secret_files([vm_area(), runs_area(), vproject.root, vproject.state], secret.encode()) == []
    )


def test_efivars_never_stay_behind(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "hi")
    vproject.ask("dev", "exit 1")
    starts = vproject.starts()
    assert len(starts) == 2
    for boot in starts:
        efivars = Path(boot["efivars"])
        assert efivars.name.startswith("efi_variable_store_") and str(vm_area()) in str(efivars)
        assert not efivars.exists()
    assert vproject.vm_folders() == []


def test_timeout_stops_the_run_and_leaves_nothing(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    started = time.monotonic()
    result = vproject.ask("dev", "sleep 120", timeout_ms=2000)
    assert time.monotonic() - started < 30
    assert result.timed_out and result.status == "error"
    assert result.error_message() == "Container timed out after 2000ms"
    (boot,) = vproject.starts()
    assert pids_alive([boot["pid"]]) == []
    assert vproject.vm_folders() == []
    assert answer(vproject.ask("dev", "persist"))["runs"] == 1


def test_a_guest_that_powers_off_mid_run_is_an_error(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    result = vproject.ask("dev", "poweroff")
    assert result.status == "error"
    assert result.error is not None and "during the run" in result.error
    assert len(result.outputs) == 2  # what it printed first still came back


def test_a_failure_before_booting_shows_vibes_output(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    with pytest.raises(nc.EngineUnavailable) as info:
        vproject.ask("dev", "hi", VIBE_NETWORK_MODE="nat")
    text = str(info.value)
    assert "exited with status 1" in text and "vmnet-helper must be run as root" in text


def test_a_refused_script_is_killed_not_waited_for(vproject: VibeProject) -> None:
    """vibe hangs at the guest prompt when it refuses a script; the keeper sees it."""
    vproject.base_image()
    vproject.group("dev")
    bad = vproject.base / "bad.sh"
    bad.write_text("echo VIBE_SCRIPT_EOF\n")
    bad.chmod(0o644)
    wrapper = vproject.base / "vibe-refused"
    wrapper.write_text(
        "#!/bin/sh\nfor a; do shift; case $a in *script.sh) a=" + str(bad) + ";; esac; "
        'set -- "$@" "$a"; done\n' + f'exec {vproject.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(nc.EngineUnavailable) as info:
        vproject.ask("dev", "hi", VIBE_EXECUTABLE=str(wrapper))
    assert time.monotonic() - started < 20
    assert "did not run the script" in str(info.value)
    assert "contains marker 'VIBE_SCRIPT_EOF'" in str(info.value)
    assert pids_alive([b["pid"] for b in vproject.starts()]) == []


def test_debug_copies_the_console_to_stderr(
    vproject: VibeProject, capfd: pytest.CaptureFixture[str]
) -> None:
    vproject.base_image()
    vproject.group("dev")
    assert vproject.ask("dev", "hi", VIBE_DEBUG="1").status == "success"
    err = capfd.readouterr().err
    assert "VIBE_SCRIPT_EOF" in err and "vibe login" in err


def test_status_names_the_engine_and_what_it_isolates(vproject: VibeProject) -> None:
    settings = VibeSettings(executable=str(vproject.executable))
    status = VibeEngine().status(settings)
    assert status.available and status.version == "3f501a7"
    assert status.isolation == {nc.ISOLATION_FILESYSTEM, nc.ISOLATION_PID}
    missing = VibeEngine().status(VibeSettings(executable="/nonexistent/vibe"))
    assert not missing.available and "github.com/lynaghk/vibe" in missing.fix


def test_groups_run_side_by_side_one_disk_never_twice(vproject: VibeProject) -> None:
    import threading

    vproject.base_image()
    vproject.group("a")
    vproject.group("b")
    results: dict[str, nc.ExecutionResult] = {}

    def run(folder: str) -> None:
        results[folder] = vproject.ask(folder, "sleep 1 persist")

    threads = [threading.Thread(target=run, args=(g,)) for g in ("a", "b", "a")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(r.status == "success" for r in results.values())
    assert vproject.overlaps() == []
    disks = [b["disk"] for b in vproject.starts()]
    assert sorted(Path(d).name for d in disks) == ["a.raw", "a.raw", "b.raw"]
