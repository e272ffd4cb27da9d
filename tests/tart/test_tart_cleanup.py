"""Zero residue on every way a run ends (success, failure, timeout, Ctrl-C, SIGTERM, SIGKILL of the
CLI then a sweep), and VMs that are not ours are never touched, whatever their names."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import pytest
from conftest import BASE, TartLab, wait_for


def _hang_started(lab: TartLab, folder: str = "g1") -> bool:
    return (lab.root / "groups" / folder / "agent.hang").exists()


def test_idle_timeout_without_output_ends_agent_and_vm(lab: TartLab) -> None:
    result, _ = lab.run("g1", "hang", timeout_ms=2000)
    assert result.timed_out and result.status == "error"
    assert result.error_message() == "Container timed out after 2000ms"
    lab.assert_clean()


def test_idle_timeout_after_output_is_success(lab: TartLab) -> None:
    result, _ = lab.run("g1", "hang-after-output", timeout_ms=2000)
    assert result.timed_out and result.status == "success"
    assert [o.result for o in result.outputs] == ["before going quiet"]
    lab.assert_clean()


def test_ctrl_c_mid_run_cleans_up(lab: TartLab) -> None:
    def interrupt() -> None:
        wait_for(lambda: _hang_started(lab), 30)
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        lab.run("g1", "hang")
    lab.assert_clean()


def test_sigterm_of_the_cli_stops_and_deletes_the_vm(lab: TartLab) -> None:
    lab.group("g1")
    proc = lab.cli("run", "g1", prompt="hang")
    wait_for(lambda: _hang_started(lab), 60)
    assert len(lab.ours()) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    lab.assert_clean()


def test_a_second_sigterm_during_cleanup_does_not_cut_it_short(lab: TartLab) -> None:
    lab.group("g1")
    proc = lab.cli("run", "g1", prompt="hang")
    wait_for(lambda: _hang_started(lab), 60)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    lab.assert_clean()


def _killed_run(lab: TartLab, folder: str = "g1") -> str:
    """A CLI run SIGKILLed mid-run: its VM is left behind, still running (as on macOS)."""
    lab.group(folder)
    proc = lab.cli("run", folder, prompt="hang", folder=folder)
    wait_for(lambda: _hang_started(lab, folder), 60)
    proc.kill()
    proc.communicate(timeout=30)
    (left,) = lab.ours()
    return left


@pytest.mark.parametrize("how", ["run", "stats", "reset"])
def test_sigkill_leftover_is_swept_by_the_next_run_stats_or_reset(lab: TartLab, how: str) -> None:
    left = _killed_run(lab)
    assert lab.running(left)
    if how == "run":
        result, sink = lab.run("g2", "ok")
        assert result.exit_code == 0
        assert any(f"removed the leftover VM {left}" in p for p in sink.problems), sink.problems
    elif how == "stats":
        rows = lab.runtimes().stats(["tart"])
        assert left not in {r.path for r in rows}
    else:
        removed = lab.runtimes().reset("g1")
        assert any(left in line for line in removed), removed
    lab.assert_clean()


def test_vms_of_the_user_are_never_touched_whatever_their_name(lab: TartLab) -> None:
    names = ["my-vm", "nanoclaw", "nanoclaw-g1-abc123-pid1", "nanoclaw-nc-g1-000000-000000000000"]
    for name in names:
        lab.tart("clone", BASE, name, check=True)
    lab.foreign.update(names)
    user_run = lab.start_vm("nanoclaw-nc-g1-000000-000000000000")
    try:
        result, _ = lab.run("g1", "ok")
        assert result.exit_code == 0
        lab.runtimes().reset("g1")
        lab.runtimes().stats(["tart"])
        left = _killed_run(lab)  # a real leftover, among the user's look-alikes
        lab.runtimes().stats(["tart"])
        assert left not in lab.vms()
        assert set(names) <= set(lab.vms())
        assert lab.running("nanoclaw-nc-g1-000000-000000000000")
        lab.assert_clean()
    finally:
        lab.tart("stop", "nanoclaw-nc-g1-000000-000000000000")
        user_run.wait(timeout=30)


def test_a_name_already_taken_is_never_reused(lab: TartLab) -> None:
    # `tart clone` silently replaces a VM: a run named like the user's VM must pick another name.
    taken = "nanoclaw-myrun"
    lab.tart("clone", BASE, taken, check=True)
    marker = lab.home / "vms" / taken / "disk" / "Users" / "admin" / "precious.txt"
    marker.write_text("the user's data")
    lab.foreign.add(taken)
    before = len(lab.calls())
    result, _ = lab.run("g1", "ok", run_name="myrun")
    assert result.exit_code == 0
    clones = [a for a in lab.calls()[before:] if a[0] == "clone"]
    assert len(clones) == 1 and clones[0][2].startswith(taken + "-"), clones
    assert all(a[2] != taken for a in clones), clones
    assert marker.read_text() == "the user's data"
    lab.assert_clean()
