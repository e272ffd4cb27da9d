"""Builds tart runtime requests against the stand-in; shared by the tests and driver.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nanoclaw_runtime_tart.settings import TartSettings

from nanoclaw_runtimes_core.groups import resolve_group
from nanoclaw_runtimes_core.models import (
    ExecuteRequest,
    Group,
    Mount,
    OutputSink,
    Project,
)
from nanoclaw_runtimes_core.mounts import contract_mounts
from nanoclaw_runtimes_core.testing import NanoclawProject, RecordingSink
from nanoclaw_runtimes_core.testing.processes import wait_until

HERE = Path(__file__).resolve().parent
STANDIN = HERE.parent / "standins" / "tart"
AGENT = HERE / "fake_agent.py"


def make_settings(slots_dir: Path, **overrides: object) -> TartSettings:
    values: dict[str, object] = {
        "executable": str(STANDIN),
        "agent_command": (sys.executable, str(AGENT)),
        "slots_dir": str(slots_dir),
        "boot_timeout_ms": 30_000,
        "stop_timeout_ms": 5_000,
    }
    values.update(overrides)
    return TartSettings(**values)  # type: ignore[arg-type]


def make_group(root: Path, folder: str = "g1") -> tuple[Project, Group, tuple[Mount, ...]]:
    """The group (created) with its contract mounts, as the dispatcher builds them."""
    helper = NanoclawProject(root)
    helper.group(folder)
    group = resolve_group(helper.project, folder)
    mounts = contract_mounts(helper.project, group, (), helper.allowlist_path).mounts
    return helper.project, group, mounts


def make_request(
    root: Path,
    settings: TartSettings,
    *,
    prompt: str | None = "ok",
    command: tuple[str, ...] | None = None,
    folder: str = "g1",
    timeout_ms: int = 60_000,
    secrets: dict[str, str] | None = None,
    sink: OutputSink | None = None,
    run_id: str = "",
) -> ExecuteRequest:
    return NanoclawProject(root).execute_request(
        folder,
        settings,
        command=command,
        prompt=prompt or "",
        secrets=secrets,
        timeout_ms=timeout_ms,
        sink=sink or RecordingSink(),
        run_id=run_id,
    )


def tart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Call the stand-in directly."""
    return subprocess.run(
        [str(STANDIN), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def local_vms(env: dict[str, str] | None = None) -> list[dict]:
    out = tart("list", "--source", "local", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


SECRET = "sk-ant-do-not-leak-7f3a9c"


def calls(state: Path) -> list[list[str]]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [json.loads(line)["argv"] for line in lines]


def events(state: Path) -> list[dict]:
    path = state / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def assert_no_vms(state: Path) -> None:
    assert local_vms() == []
    assert [p.name for p in (state / "vms").iterdir()] == []
    starts = [e for e in events(state) if e["event"] == "start"]
    stops = [e for e in events(state) if e["event"] == "stop"]
    assert len(starts) == len(stops), "a VM was started and never stopped"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(predicate, timeout: float = 30.0) -> None:
    assert wait_until(predicate, timeout), "timed out waiting"
