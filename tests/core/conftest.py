"""A runtime that runs the agent or command as a plain local subprocess, for dispatcher tests."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest

from nanoclaw_runtimes_core import hookimpl
from nanoclaw_runtimes_core.api import Runtimes
from nanoclaw_runtimes_core.models import EngineStatus, StatsRow
from nanoclaw_runtimes_core.plugins import Registry
from nanoclaw_runtimes_core.process import run_streaming
from nanoclaw_runtimes_core.settings import setting

AGENT = (sys.executable, "-m", "nanoclaw_runtimes_core.example_agent")


@attrs.define(frozen=True, kw_only=True)
class SubprocessSettings:
    timeout: int = setting(60_000, env="SUBPROC_TIMEOUT", key="timeout", help="idle timeout, ms")
    flavour: str = setting("plain", env="SUBPROC_FLAVOUR", key="flavour", help="a runtime key")


class SubprocessRuntime:
    """Runs in the group's workspace on the host: no isolation, test use only."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[str] = []

    @hookimpl
    def runtime_settings(self) -> type:
        return SubprocessSettings

    @hookimpl
    def engine_status(self, settings: SubprocessSettings) -> EngineStatus:
        return EngineStatus(
            available=self.available,
            engine="subprocess",
            detail="" if self.available else "switched off",
            fix="switch it on",
        )

    @hookimpl
    def prepare(self, request):  # type: ignore[no-untyped-def]
        self.calls.append("prepare")
        return "ready"

    @hookimpl
    def execute(self, request):  # type: ignore[no-untyped-def]
        self.calls.append("execute")
        workspace = next(
            m.host_path for m in request.mounts if m.container_path == "/workspace/group"
        )
        argv = request.command or AGENT
        stdin = request.input_json() if request.input is not None else None
        return run_streaming(
            argv,
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            stdin=stdin,
            cwd=workspace,
            passthrough=request.command is not None,
            grace_s=1,
        ).to_result()

    @hookimpl
    def reset(self, request):  # type: ignore[no-untyped-def]
        self.calls.append("reset")
        marker = request.group.path / "state"
        if marker.exists():
            marker.unlink()
            return ["state"]
        return []

    @hookimpl
    def stats(self, request):  # type: ignore[no-untyped-def]
        self.stats_groups = [g.folder for g in request.groups]
        return [StatsRow(group="g", kind="disk", apparent_mb=1.0, allocated_mb=0.5)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "groups" / "global").mkdir(parents=True)
    return project


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {
        "NANOCLAW_MOUNT_ALLOWLIST": str(tmp_path / "no-allowlist.json"),
        "PATH": "/usr/bin:/bin",
    }


@pytest.fixture
def runtime() -> SubprocessRuntime:
    return SubprocessRuntime()


@pytest.fixture
def runtimes(root: Path, environ: dict[str, str], runtime: SubprocessRuntime) -> Runtimes:
    registry = Registry()
    registry.register("subproc", runtime, distribution="tests")
    return Runtimes(root, environ=environ, registry=registry)


def make_group(root: Path, folder: str, config: str | None = None) -> Path:
    path = root / "groups" / folder
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.json").write_text(config)
    return path
