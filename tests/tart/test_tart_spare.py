"""The pre-booted spare VM (TART_SPARE / containerConfig.spare): booted after a run, taken by the
group's next run (still one VM per run), replaced, deleted at its idle end, swept if its reaper
dies, and never in the way of a run that needs a VM slot."""

from __future__ import annotations

import json
import os
import signal

from conftest import TartLab, wait_for

import nanoclaw_runtimes_core as nc


def _spares(lab: TartLab, *, ready: bool | None = True) -> list:
    rows = [r for r in lab.runtimes().stats(["tart"]) if r.kind == "spare-vm"]
    return [r for r in rows if ready is None or r.details["ready"] is ready]


def _wait_spare(lab: TartLab) -> str:
    wait_for(lambda: _spares(lab), 30, what="a ready spare VM")
    (row,) = _spares(lab)
    return str(row.path)


def test_a_spare_is_used_by_the_next_run_and_replaced(lab: TartLab) -> None:
    lab.group("g1", {"spare": True})
    first, _ = lab.run("g1", "ok")
    assert first.exit_code == 0
    spare = _wait_spare(lab)
    row = _spares(lab)[0]
    assert row.group == "g1" and row.details["idleSecondsLeft"] > 0
    runs_before = [e for e in lab.events() if e["event"] == "start"]
    calls_before = len(lab.calls())
    second, sink = lab.run("g1", "ok")
    assert second.exit_code == 0, (second, sink.problems)
    calls = lab.calls()[calls_before:]
    # The run went into the spare: no clone, no boot of its own, one VM for the run.
    assert any(a[:3] == ["exec", "-i", spare] for a in calls), calls
    assert not [a for a in calls if a[0] == "clone" and a[2] != spare and "spare" not in a[2]]
    starts_during = [e for e in lab.events() if e["event"] == "start"][len(runs_before) :]
    assert all("spare" in e["name"] for e in starts_during), starts_during
    assert spare not in lab.vms(), "a used spare is deleted like any run's VM"
    replacement = _wait_spare(lab)
    assert replacement != spare
    # `warm` lists it, `warm --stop` deletes it.
    proc = lab.cli("warm", "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    listed = json.loads(out)
    assert [(r["kind"], r["path"], r["group"]) for r in listed] == [("spare-vm", replacement, "g1")]
    proc = lab.cli("warm", "--stop")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert replacement.encode() in out
    lab.assert_clean()


def test_a_spare_nobody_used_is_deleted_at_its_idle_end(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_SPARE", "1")
    monkeypatch.setenv("TART_SPARE_IDLE", "1500")
    result, _ = lab.run("g1", "ok")
    assert result.exit_code == 0
    spare = _wait_spare(lab)
    wait_for(lambda: spare not in lab.vms(), 20, what="the idle spare to be deleted")
    lab.assert_clean()


def test_a_spare_whose_reaper_was_killed_is_swept(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_SPARE", "1")
    result, _ = lab.run("g1", "ok")
    assert result.exit_code == 0
    spare = _wait_spare(lab)
    record = json.loads((lab.state / "vms" / f"{spare}.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)
    lock = lab.state / "vms" / f"{spare}.json"
    wait_for(lambda: not nc.owner_alive(lock), 10, what="the spare to lose its owner")
    assert lab.running(spare), "the reaper died, its VM did not"
    lab.runtimes().stats(["tart"])  # sweeps it
    assert spare not in lab.vms()
    lab.assert_clean()


def test_a_spare_never_makes_a_run_wait_for_a_slot(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_MAX_RUNNING", "1")
    lab.group("g1", {"spare": True})
    lab.run("g1", "ok")
    spare = _wait_spare(lab)
    result, sink = lab.run("g2", "ok", timeout_ms=20_000)
    assert result.exit_code == 0, result
    assert spare not in lab.vms()
    assert any(f"deleted the spare VM {spare}" in p for p in sink.problems), sink.problems
    assert not any("waiting" in p for p in sink.problems), sink.problems
    lab.assert_clean()


def test_a_spare_made_for_other_settings_is_not_used(lab: TartLab) -> None:
    lab.group("g1", {"spare": True})
    lab.run("g1", "ok")
    spare = _wait_spare(lab)
    lab.group("g1", {"spare": True, "cpus": 6})
    calls_before = len(lab.calls())
    result, sink = lab.run("g1", "ok")
    assert result.exit_code == 0
    assert not any(a[:3] == ["exec", "-i", spare] for a in lab.calls()[calls_before:])
    assert any("changed" in p and spare in p for p in sink.problems), sink.problems
    assert spare not in lab.vms()
    replacement = _wait_spare(lab)  # made for the new settings
    removed = lab.runtimes().reset("g1", scope="warm")
    assert any(replacement in line for line in removed), removed
    lab.assert_clean()
