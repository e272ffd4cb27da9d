"""Warm VMs: kept after a run, reused while nothing that shapes them changed, replaced (saying
why) when something did or when they stopped answering, powered off at their idle end, and
never holding a killed run's secrets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe import rundir, vibe_engine

from .conftest import (
    Sink,
    VibeProject,
    answer,
    needs_bwrap,
    pids_alive,
    runs_area,
    secret_files,
    vm_area,
    wait_for,
)

pytestmark = needs_bwrap
WARM = {"VIBE_KEEP_WARM": "60000"}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def warm_rows(vp: VibeProject) -> list[object]:
    return [r for r in vp.runtimes().stats(["vibe"]) if r.kind == "warm-vm"]


def test_warm_then_cold_then_warm(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    assert answer(vproject.ask("dev", "persist", **WARM))["runs"] == 1
    started = time.monotonic()
    assert answer(vproject.ask("dev", "persist", **WARM))["runs"] == 2
    warm_s = time.monotonic() - started
    assert len(vproject.starts()) == 1  # the second run used the warm VM
    (row,) = warm_rows(vproject)
    assert row.group == "dev" and row.details["memoryMB"] > 0  # type: ignore[attr-defined]
    assert 50 < row.details["idleSecondsLeft"] <= 60  # type: ignore[attr-defined]
    sink = Sink()
    assert answer(vproject.ask("dev", "persist", sink=sink, VIBE_RAM="640", **WARM))["runs"] == 3
    assert len(vproject.starts()) == 2
    assert any("powering off the warm VM" in p and "ramMB 512 -> 640" in p for p in sink.problems)
    assert answer(vproject.ask("dev", "persist", VIBE_RAM="640", **WARM))["runs"] == 4
    assert len(vproject.starts()) == 2
    assert vproject.overlaps() == []  # one VM per disk, ever
    assert warm_s < 5


def test_idle_vm_powers_itself_off(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "hi", VIBE_KEEP_WARM="1500")
    (boot,) = vproject.starts()
    assert pids_alive([boot["pid"]]) == [boot["pid"]]
    assert len(warm_rows(vproject)) == 1
    wait_for(lambda: pids_alive([boot["pid"]]) == [], timeout=30)
    assert vproject.boots()[-1]["event"] == "end"  # the guest powered off: vibe exited
    wait_for(lambda: warm_rows(vproject) == [] and vproject.vm_folders() == [], timeout=10)
    assert not Path(boot["efivars"]).exists()


def test_reset_stops_the_warm_vm_first(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "persist", **WARM)
    (boot,) = vproject.starts()
    removed = vproject.runtimes().reset("dev")
    assert removed[0].startswith("powered off the warm vibe VM of group 'dev'")
    assert any("dev.raw" in line for line in removed[1:])
    assert pids_alive([boot["pid"]]) == [] and vproject.vm_folders() == []
    assert answer(vproject.ask("dev", "persist"))["runs"] == 1  # a fresh disk


def test_state_is_per_group(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.group("other")
    assert answer(vproject.ask("dev", "persist"))["runs"] == 1
    assert answer(vproject.ask("dev", "persist", **WARM))["runs"] == 2
    assert answer(vproject.ask("other", "persist"))["runs"] == 1
    assert answer(vproject.ask("dev", "persist"))["runs"] == 3


def test_a_dead_vm_is_replaced(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "persist", **WARM)
    (boot,) = vproject.starts()
    os.killpg(boot["pid"], signal.SIGKILL)  # vibe (and its guest) die: the disk's writes too
    wait_for(lambda: pids_alive([boot["pid"]]) == [])
    assert answer(vproject.ask("dev", "persist", **WARM))["runs"] == 1
    assert len(vproject.starts()) == 2


def test_a_hung_vm_is_replaced_within_bounded_time(
    vproject: VibeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vibe_engine, "HUNG_S", 4.0)
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "hi", **WARM)
    (boot,) = vproject.starts()
    frozen = [boot["pid"], *descendants(boot["pid"])]
    for pid in frozen:  # the whole VM freezes: vibe and its guest
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2)
        sink = Sink()
        started = time.monotonic()
        assert vproject.ask("dev", "hi", sink=sink, **WARM).status == "success"
        assert time.monotonic() - started < 30
        assert any("stopped answering" in p for p in sink.problems)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    wait_for(lambda: pids_alive([boot["pid"]]) == [])
    assert len(vproject.starts()) == 2


KILLED_CLI = textwrap.dedent(
    """
    import os, sys
    import nanoclaw_runtimes_core as nc
    env = dict(os.environ)
    inp = nc.ContainerInput(prompt="sleep 60", group_folder="dev", chat_jid="c@g.us",
                            is_main=False, secrets={"API_KEY": sys.argv[2]})
    nc.Runtimes(sys.argv[1], environ=env).execute("dev", input=inp)
    """
)


def test_sigkill_of_the_cli_leaves_no_secret_and_cancels_the_run(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    secret = "sk-killed-cli-5f2a"
    env = {**os.environ, **vproject.env, **WARM}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLI, str(vproject.root), secret], env=env
    )

    def accepted() -> list[Path]:
        return [p for f in vproject.vm_folders() for p in (f / "ctl" / "out").glob("*/accepted")]

    try:
        wait_for(accepted, timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (boot,) = vproject.starts()
    folder = vproject.vm_folders()[0]
    # the keeper cancels the run whose follower died and removes what it was given
    wait_for(lambda: not list((folder / "ctl" / "out").glob("*")), timeout=20)
    vproject.runtimes().stats(["vibe"])  # sweeps the killed run's folder of the core
    roots = [vm_area(), runs_area(), vproject.root, vproject.state]
    assert secret_files(roots, secret.encode()) == []
    assert pids_alive([boot["pid"]]) == [boot["pid"]]  # the VM itself stays warm
    result = vproject.ask("dev", "persist", **WARM)
    assert answer(result)["runs"] == 1 and len(vproject.starts()) == 1
    assert set(answer(result)["pids"]) == {1}  # nothing of the killed run is left in the guest


def test_the_vm_record_names_its_group_and_key(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    vproject.ask("dev", "hi", **WARM)
    (folder,) = vproject.vm_folders()
    record = json.loads((folder / rundir.RECORD).read_text())
    assert record["group"] == "dev" and record["project"] == str(vproject.root)
    assert len(record["boot_key"]) == 32 and record["engine"] == "vibe"
    assert oct(folder.stat().st_mode & 0o777) in ("0o700", "0o711")


def test_a_timed_out_run_is_cancelled_in_the_warm_vm(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")
    result = vproject.ask("dev", "hang", timeout_ms=1500, **WARM)
    assert result.timed_out and result.output_count == 2  # it answered, then went quiet
    assert result.status == "success"  # NanoClaw's rule: output, then idle, is a success
    again = vproject.ask("dev", "hi", **WARM)
    assert set(answer(again)["pids"]) == {1} and len(vproject.starts()) == 1


def test_a_vm_that_ends_keeps_only_the_output_a_live_run_still_reads(tmp_path: Path) -> None:
    """A guest with no keep-warm time powers off right after its run, maybe before the host
    has read the output: the keeper's clean-up at vibe's end keeps ``out/<run>`` of a run
    whose host process lives, removes the rest, and follows no link the guest planted."""
    from nanoclaw_runtime_vibe import keeper

    folder = tmp_path / "vm-x"
    (folder / "ctl" / "out" / "live").mkdir(parents=True)
    (folder / "ctl" / "out" / "live" / "status").write_text("0\n")
    (folder / "ctl" / "out" / "gone").mkdir()
    (folder / "ctl" / "req" / "other").mkdir(parents=True)
    (folder / "owners").mkdir()
    (folder / rundir.LAUNCH).write_text("{}")
    (folder / "console.log").write_text("tail")
    outside = tmp_path / "host-folder"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (folder / "ctl" / "out" / "planted").symlink_to(outside)
    live = vibe_engine._claim(folder / "owners" / "live")
    dead = vibe_engine._claim(folder / "owners" / "gone")
    os.close(dead)
    try:
        keeper.Keeper(folder)._finish(0, None, ready=True)
        assert sorted(p.name for p in folder.iterdir()) == sorted(["ctl", rundir.EXIT])
        assert [p.name for p in (folder / "ctl").iterdir()] == ["out"]
        assert [p.name for p in (folder / "ctl" / "out").iterdir()] == ["live"]
        assert (folder / "ctl" / "out" / "live" / "status").read_text() == "0\n"
    finally:
        os.close(live)
    assert (outside / "precious").read_text() == "keep me"
    # with no run left to follow, nothing but the exit record stays
    (folder / rundir.LAUNCH).write_text("{}")
    keeper.Keeper(folder)._finish(0, None, ready=True)
    assert sorted(p.name for p in folder.iterdir()) == [rundir.EXIT]
    # a kept name the guest replaced with a link is removed, never followed
    (folder / "owners").mkdir()
    (folder / rundir.LAUNCH).write_text("{}")
    (folder / "ctl").symlink_to(outside)
    live = vibe_engine._claim(folder / "owners" / "live")
    try:
        keeper.Keeper(folder)._finish(0, None, ready=True)
    finally:
        os.close(live)
    assert not (folder / "ctl").is_symlink() and not (folder / "ctl").exists()
    assert (outside / "precious").read_text() == "keep me"
