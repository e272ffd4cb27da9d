"""Resource limits of host-process sandboxes: cgroups as root, said when not enforced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.limits import CGROUP_ROOT, plan_limits, unenforced_message
from nanoclaw_runtimes_core.testing import RecordingSink

V1 = (CGROUP_ROOT / "memory" / "cgroup.procs").exists() and not (
    CGROUP_ROOT / "cgroup.controllers"
).exists()


@pytest.mark.skipif(os.geteuid() != 0 or not V1, reason="needs root and cgroup v1")
def test_cgroup_v1_limits_are_enforced_and_cleaned_up() -> None:
    name = f"nc-limits-test-{os.getpid()}"
    plan = plan_limits(name, nc.Limits(cpus=0.5, memory_mb=64, pids=20), dedicated_user=True)
    try:
        assert plan.enforced == [
            "cpus 0.5 (cgroup v1)",
            "memory 64 MB (cgroup v1)",
            "20 processes (cgroup v1)",
        ]
        assert not plan.unenforced
        memory = CGROUP_ROOT / "memory" / "nanoclaw-runtimes" / name
        cpu = CGROUP_ROOT / "cpu" / "nanoclaw-runtimes" / name
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 * 2**20)
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        sink = RecordingSink()
        result = nc.run_process(
            ["sh", "-c", "cat /proc/self/cgroup; sleep 30 & sleep 30 & wait"],
            timeout_ms=1500,
            sink=sink,
            agent_mode=False,
            limits=plan,
            grace_s=0.5,
        )
        assert f"memory:/nanoclaw-runtimes/{name}" in sink.stdout_text
        assert result.timed_out
        assert not memory.exists() and not cpu.exists(), "the run's cgroups were left"
    finally:
        plan.kill_and_remove()


def test_limits_that_cannot_be_enforced_are_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nanoclaw_runtimes_core.limits.CGROUP_ROOT", Path("/nonexistent"))
    plan = plan_limits("x", nc.Limits(cpus=1, memory_mb=64, pids=5), dedicated_user=True)
    assert plan.unenforced == ["cpus", "memory"] and plan.nproc == 5
    message = unenforced_message(plan.unenforced)
    assert "the cpus, memory limits are not enforced" in message
    assert "NANOCLAW_LIMITS=strict" in message
