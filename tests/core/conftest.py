"""In-process runtimes for the core's tests: nothing here depends on an installed runtime."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.plugins import Registry
from nanoclaw_runtimes_core.testing import NanoclawProject, RecordingSink

AGENT = (sys.executable, str(nc.example_agent_file()))


@nc.settings_class
class SubprocSettings:
    """A runtime's settings, to test how they are resolved."""

    flavour: str = nc.setting("plain", env="SUBPROC_FLAVOUR", key="flavour", help="A test key.")
    level: int = nc.setting(
        1, env="SUBPROC_LEVEL", key="level", validator=nc.between(1, 9), help="A test number."
    )


class SubprocRuntime:
    """Runs the agent or the command as a host process in the group's folder (no isolation)."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[str] = []
        self.requests: list[Any] = []

    @nc.hookimpl
    def runtime_settings(self) -> type:
        return SubprocSettings

    @nc.hookimpl
    def engine_status(self, settings: SubprocSettings) -> nc.EngineStatus:
        return nc.EngineStatus(
            available=self.available,
            engine="subprocess",
            detail="ready" if self.available else "switched off",
            fix="switch it on",
        )

    @nc.hookimpl
    def prepare(self, request: nc.PrepareRequest[SubprocSettings]) -> str | None:
        self.calls.append("prepare")
        return "ready"

    @nc.hookimpl
    def execute(self, request: nc.ExecuteRequest[SubprocSettings]) -> nc.ExecutionResult:
        self.calls.append("execute")
        self.requests.append(request)
        argv = list(request.command or request.agent_command or AGENT)
        return nc.run_process(
            argv,
            timeout_ms=request.timeout_ms,
            sink=request.sink,
            agent_mode=request.input is not None,
            stdin=request.input_json() if request.input is not None else None,
            env=nc.sandbox_env(request, home=str(request.group.path)),
            cwd=request.group.path,
            user=request.user,
            grace_s=1.0,
        )

    @nc.hookimpl
    def reset(self, request: nc.GroupRequest[SubprocSettings]) -> list[str]:
        self.calls.append(f"reset:{request.scope}")
        return nc.reset_state(request)

    @nc.hookimpl
    def stats(self, request: nc.StatsRequest[SubprocSettings]) -> list[nc.StatsRow]:
        self.calls.append("stats:" + ",".join(g.folder for g in request.groups))
        return [nc.StatsRow(group="g", kind="disk", apparent_mb=1.0, allocated_mb=0.5)]


@pytest.fixture
def project(nanoclaw_project: NanoclawProject) -> NanoclawProject:
    return nanoclaw_project


@pytest.fixture
def runtime() -> SubprocRuntime:
    return SubprocRuntime()


@pytest.fixture
def registry(runtime: SubprocRuntime) -> Registry:
    registry = Registry()
    registry.register("subproc", runtime, distribution="tests")
    return registry


@pytest.fixture
def environ(project: NanoclawProject) -> dict[str, str]:
    return {"NANOCLAW_MOUNT_ALLOWLIST": str(project.allowlist_path), "PATH": "/usr/bin:/bin"}


@pytest.fixture
def runtimes(project: NanoclawProject, environ: dict[str, str], registry: Registry) -> nc.Runtimes:
    return nc.Runtimes(project.root, environ=environ, registry=registry)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def ask(folder: str, prompt: str = "hello", **kwargs: Any) -> nc.ContainerInput:
    """A ContainerInput for ``folder``."""
    return nc.ContainerInput(
        prompt=prompt, group_folder=folder, chat_jid="c@g.us", is_main=False, **kwargs
    )


@pytest.fixture
def cli(project: NanoclawProject, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the CLI in process over the test registry: ``cli("run", "dev", stdin=b"...")`` gives
    (exit status, stdout, stderr)."""
    from nanoclaw_runtimes_core import plugins

    monkeypatch.setattr(plugins, "_default", registry)
    return _CliRunner(project.root, monkeypatch)


class _CliRunner:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.monkeypatch = root, monkeypatch

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        import io

        from nanoclaw_runtimes_core.cli import main

        out, err = io.BytesIO(), io.BytesIO()
        self.monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
        self.monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, write_through=True))
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(["--root", str(self.root), *args])
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()
