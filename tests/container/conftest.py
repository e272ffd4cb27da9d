"""Fixtures of the container runtime's tests: a project and the engine stand-ins on PATH."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .container_helpers import STANDINS, ProjectHelper, Standins


@pytest.fixture
def project(tmp_path: Path) -> ProjectHelper:
    """A temporary project root with groups/global."""
    root = tmp_path / "project"
    (root / "groups" / "global").mkdir(parents=True)
    return ProjectHelper(root=root)


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Standins]:
    """Put the stand-ins first on PATH, with fresh state; kill what they left running."""
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    state = {}
    for tool in ("docker", "podman", "container"):
        folder = tmp_path / f"{tool}-state"
        folder.mkdir()
        monkeypatch.setenv(f"{tool.upper()}_STANDIN_STATE", str(folder))
        monkeypatch.delenv(f"{tool.upper()}_STANDIN_DOWN", raising=False)
        state[tool] = folder
    monkeypatch.delenv("DOCKER_STANDIN_STOP_HANGS", raising=False)
    assert shutil.which("docker") == str(STANDINS / "docker")
    helper = Standins(state=state)
    yield helper
    for tool in state:
        for record in helper.containers(tool):
            if record.get("pid"):
                with contextlib.suppress(OSError):
                    os.killpg(record["pid"], 9)
