"""The runtime contract suite on each image engine: real Docker, real Podman, and Apple's
`container` through its stand-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from nanoclaw_runtime_container.engines import image

from nanoclaw_runtimes_core.testing.contract import RuntimeContract

from .conftest import need
from .helpers import AGENT_IMAGE, AppleStandin, EngineProject

_built: set[str] = set()


def ensure_agent_image(engine: str) -> None:
    """``prepare --base container`` once per session on a real engine."""
    if engine in _built:
        return
    helper = EngineProject(engine, {}, CONTAINER_IMAGE=AGENT_IMAGE)
    try:
        done = helper.cli("prepare", "--base", "container", timeout=900)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    finally:
        helper.remove()
    _built.add(engine)


class _RealEngineContract(RuntimeContract):
    runtime_name = "container"
    engine: ClassVar[str] = ""

    @pytest.fixture
    def runtime_env(self, real_engines: dict[str, str]) -> dict[str, str]:
        need(real_engines, self.engine)
        ensure_agent_image(self.engine)
        return {
            "CONTAINER_ENGINE": self.engine,
            "CONTAINER_IMAGE": AGENT_IMAGE,
            "CONTAINER_STOP_GRACE": "15",
        }


class TestDockerContract(_RealEngineContract):
    engine = "docker"


class TestPodmanContract(_RealEngineContract):
    engine = "podman"


class TestAppleContainerContract(RuntimeContract):
    """Apple's tool cannot run here: its stand-in (release 1.2.2) runs each container under
    bubblewrap with the tool's own flags and refusals."""

    runtime_name = "container"

    @pytest.fixture
    def runtime_env(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[dict[str, str]]:
        standin = AppleStandin(tmp_path / "apple")
        monkeypatch.setenv("PATH", f"{standin.bin}{os.pathsep}{os.environ['PATH']}")
        files = image.context_files()
        with image.build_context(files) as context:
            built = standin.run(
                "build",
                "-t",
                AGENT_IMAGE,
                "--label",
                f"{image.CONTEXT_LABEL}={image.fingerprint(files)}",
                "-f",
                str(context / "Dockerfile"),
                str(context),
            )
        assert built.returncode == 0, built.stderr
        try:
            yield {
                "CONTAINER_ENGINE": "container",
                "CONTAINER_IMAGE": AGENT_IMAGE,
                "CONTAINER_STOP_GRACE": "15",
            }
        finally:
            standin.kill_all()
