"""The runtime in a host process of its own: SIGTERM, SIGKILL then sweep, the 2-VM limit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from nanoclaw_runtime_tart import plugin
from tart_harness import (
    HERE,
    assert_no_vms,
    events,
    local_vms,
    make_group,
    pid_alive,
    tart,
    wait_for,
)

from nanoclaw_runtimes_core.models import GroupRequest, Project

DRIVER = HERE / "driver.py"


def start_driver(
    root: Path, slots: Path, prompt: str, folder: str = "g1", timeout_ms: int = 60_000
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(root), str(slots), prompt, folder, str(timeout_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no result from driver (exit {proc.returncode}): {err}"
    return json.loads(lines[-1])


def test_sigterm_of_host_process_stops_and_deletes_vm(state, root, slots):
    proc = start_driver(root, slots, "hang")
    pid_file = root / "groups" / "g1" / "agent.pid"
    wait_for(pid_file.exists, timeout=60)
    agent = int(pid_file.read_text())
    assert len(local_vms()) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    wait_for(lambda: not pid_alive(agent), timeout=10)
    assert_no_vms(state)


def test_sigkill_of_host_leaves_vm_that_the_sweep_removes(state, root, slots, settings):
    proc = start_driver(root, slots, "hang")
    pid_file = root / "groups" / "g1" / "agent.pid"
    wait_for(pid_file.exists, timeout=60)
    proc.kill()
    proc.wait(timeout=30)
    left = local_vms()
    assert len(left) == 1 and left[0]["Name"].endswith(f"-pid{proc.pid}")
    rows = plugin.stats(request=_stats(root, settings))
    leftover = [r for r in rows if r.kind == "leftover-vm"]
    assert [r.path for r in leftover] == [left[0]["Name"]] and leftover[0].group == "g1"
    project, group, _ = make_group(root)
    removed = plugin.reset(request=GroupRequest(project=project, group=group, settings=settings))
    assert len(removed) == 1 and left[0]["Name"] in removed[0]
    assert_no_vms(state)


def test_next_run_sweeps_leftovers_of_a_killed_run(state, root, slots, request_for):
    proc = start_driver(root, slots, "hang", folder="other")
    wait_for((root / "groups" / "other" / "agent.pid").exists, timeout=60)
    proc.kill()
    proc.wait(timeout=30)
    assert len(local_vms()) == 1
    request = request_for(prompt="ok")
    result = plugin.execute(request=request)
    assert result.exit_code == 0
    assert any("leftover VM nanoclaw-other-" in p for p in request.sink.problems)
    assert_no_vms(state)


def test_third_concurrent_run_waits_for_a_slot_then_succeeds(state, root, slots):
    procs = [start_driver(root, slots, "sleep:2", folder=f"g{i}") for i in range(3)]
    results = [finish(p) for p in procs]
    assert all(r["exit_code"] == 0 and r["outputs"] == ["slept"] for r in results), results
    assert int((state / "max_running").read_text()) == 2
    starts = [e for e in events(state) if e["event"] == "start"]
    assert len(starts) == 3 and max(e["running"] for e in starts) == 2
    waited = [r for r in results if any("waiting for a free VM slot" in p for p in r["problems"])]
    assert len(waited) >= 1
    # Never a "system limit" failure: the runtime queued instead.
    assert not any("system limit" in " ".join(r["problems"]) for r in results)
    assert_no_vms(state)


def test_vms_not_started_by_us_make_the_run_wait_not_fail(state, request_for, monkeypatch):
    # Two foreign VMs fill macOS's limit; our slot pool does not know about them.
    foreign = []
    for name in ("ci-runner-1", "ci-runner-2"):
        assert tart("clone", "ghcr.io/cirruslabs/macos-sequoia-base:latest", name).returncode == 0
        foreign.append(
            subprocess.Popen(
                [str(HERE.parent / "standins" / "tart"), "run", name, "--no-graphics"],
                start_new_session=True,
            )
        )
    wait_for(lambda: sum(vm["Running"] for vm in local_vms()) == 2)
    stopper = threading.Timer(2.0, lambda: tart("stop", "ci-runner-1"))
    stopper.start()
    try:
        request = request_for(prompt="ok")
        result = plugin.execute(request=request)
    finally:
        stopper.join()
        tart("stop", "ci-runner-2")
        for proc in foreign:
            proc.wait(timeout=30)
    assert result.exit_code == 0, result
    assert any("macOS refuses to start another VM" in p for p in request.sink.problems)
    assert {vm["Name"] for vm in local_vms()} == {"ci-runner-1", "ci-runner-2"}


def test_sweep_never_touches_foreign_or_live_vms(state, root, settings):
    base = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "my-own-vm": "foreign",
        "nanoclaw": "foreign",
        "nanoclaw-g1-notours": "foreign (no pid part)",
        f"nanoclaw-g1-abc123-pid{sleeper.pid}": "live owner",
        f"nanoclaw-g1-def456-pid{dead.pid}": "dead owner",
        f"nanoclaw-g2-aaa111-pid{dead.pid}": "dead owner, other group",
    }
    try:
        for name in names:
            assert tart("clone", base, name).returncode == 0
        runner = subprocess.Popen(
            [str(HERE.parent / "standins" / "tart"), "run", "my-own-vm", "--no-graphics"],
            start_new_session=True,
        )
        wait_for(lambda: any(vm["Running"] for vm in local_vms()))
        project, group, _ = make_group(root)
        removed = plugin.reset(
            request=GroupRequest(project=project, group=group, settings=settings)
        )
        left = {vm["Name"] for vm in local_vms()}
        assert left == set(names) - {f"nanoclaw-g1-def456-pid{dead.pid}"}
        assert len(removed) == 1
        rows = {r.path: r for r in plugin.stats(request=_stats(root, settings))}
        assert rows[f"nanoclaw-g2-aaa111-pid{dead.pid}"].kind == "leftover-vm"
        assert rows[f"nanoclaw-g1-abc123-pid{sleeper.pid}"].kind == "vm"
        assert "my-own-vm" not in rows
        # The sweep at the start of a run takes dead owners of every group, nothing else.
        from nanoclaw_runtime_tart.sweep import sweep
        from nanoclaw_runtime_tart.tartcli import Tart

        sweep(Tart(settings.executable), stop_timeout_s=5)
        left = {vm["Name"] for vm in local_vms()}
        assert left == {
            "my-own-vm",
            "nanoclaw",
            "nanoclaw-g1-notours",
            f"nanoclaw-g1-abc123-pid{sleeper.pid}",
        }
        assert next(vm for vm in local_vms() if vm["Name"] == "my-own-vm")["Running"]
    finally:
        sleeper.kill()
        sleeper.wait()
        tart("stop", "my-own-vm")
    runner.wait(timeout=30)


def _stats(root: Path, settings):
    from nanoclaw_runtimes_core.models import StatsRequest

    return StatsRequest(project=Project(root=root), settings=settings)


def test_driver_runs_to_completion(state, root, slots):
    # The harness itself: a plain run in a subprocess succeeds (so the tests above are fair).
    result = finish(start_driver(root, slots, "ok"))
    assert result["exit_code"] == 0 and result["outputs"] == ["hello g1", None]
    assert_no_vms(state)


def test_second_sigterm_during_cleanup_does_not_cut_it_short(state, root, slots):
    proc = start_driver(root, slots, "hang")
    wait_for((root / "groups" / "g1" / "agent.pid").exists, timeout=60)
    proc.send_signal(signal.SIGTERM)
    # A second signal lands while the VM is being stopped or deleted.
    wait_for(lambda: any(e["event"] == "stop" for e in events(state)) or proc.poll() is not None)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert_no_vms(state)
