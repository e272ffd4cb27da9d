"""Apple's limit of two macOS VMs: a third run waits for a VM to end instead of failing, and VMs
the runtime did not start count too."""

from __future__ import annotations

import json
import threading

from conftest import BASE, TartLab, wait_for


def test_a_third_concurrent_run_waits_then_succeeds(lab: TartLab) -> None:
    procs = []
    for i in range(3):
        lab.group(f"q{i}")
        procs.append(lab.cli("run", f"q{i}", prompt="sleep:2", folder=f"q{i}"))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outputs]
    assert all(b"slept" in out for out, _ in outputs)
    starts = [e for e in lab.events() if e["event"] == "start"]
    assert len(starts) == 3 and max(e["running"] for e in starts) == 2
    assert int((lab.home / "max_running").read_text()) == 2
    assert any(b"waiting for a VM slot" in err for _, err in outputs)
    assert not any(b"system limit" in err for _, err in outputs)
    lab.assert_clean()


def test_vms_not_started_by_us_make_a_run_wait_not_fail(lab: TartLab) -> None:
    users = []
    for name in ("ci-runner-1", "ci-runner-2"):
        lab.tart("clone", BASE, name, check=True)
        lab.foreign.add(name)
        users.append(lab.start_vm(name))
    stopper = threading.Timer(2.0, lambda: lab.tart("stop", "ci-runner-1"))
    stopper.start()
    try:
        result, sink = lab.run("g1", "ok")
    finally:
        stopper.join()
        lab.tart("stop", "ci-runner-2")
        for proc in users:
            proc.wait(timeout=30)
    assert result.exit_code == 0, result
    assert any("macOS refuses to start another VM" in p for p in sink.problems), sink.problems
    assert {"ci-runner-1", "ci-runner-2"} <= set(lab.vms())
    lab.assert_clean()


def test_tart_list_counts_what_runs(lab: TartLab) -> None:
    # The stand-in's view the tests rely on: `tart list` shows who runs.
    lab.tart("clone", BASE, "solo", check=True)
    lab.foreign.add("solo")
    proc = lab.start_vm("solo")
    rows = json.loads(lab.tart("list", "--source", "local", "--format", "json").stdout)
    assert [r["Running"] for r in rows if r["Name"] == "solo"] == [True]
    lab.tart("stop", "solo", check=True)
    proc.wait(timeout=30)
    wait_for(lambda: not lab.running("solo"))
