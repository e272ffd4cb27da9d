"""The core's contract suite, run against the container runtime: bubblewrap for real, and
docker, podman and Apple container through their stand-ins."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanoclaw_runtime_container.engines import bubblewrap

from nanoclaw_runtimes_core.testing import nanoclaw_project  # noqa: F401 (a fixture)
from nanoclaw_runtimes_core.testing.contract import RuntimeContract

from .container_helpers import STANDINS

_BWRAP = shutil.which("bwrap")


@pytest.mark.skipif(
    _BWRAP is None or not bubblewrap.probe(_BWRAP).works,
    reason="bubblewrap (bwrap) is not installed or cannot create a sandbox here",
)
class TestBubblewrapContract(RuntimeContract):
    runtime_name = "container"
    runtime_distribution = "nanoclaw-runtime-container"

    @pytest.fixture
    def runtime_env(self) -> dict[str, str]:
        return {"CONTAINER_ENGINE": "bubblewrap", "CONTAINER_STOP_GRACE": "1"}


class _StandinContract(RuntimeContract):
    """A stand-in engine first on PATH, the example agent as its image's entrypoint."""

    runtime_name = "container"
    runtime_distribution = "nanoclaw-runtime-container"
    engine = ""
    # The stand-in's container is a host process whose working directory is the host folder
    # that -w maps to; a real container reports /workspace/group.
    workspace_in_sandbox = None
    skip_tests = {
        "test_groups_do_not_see_each_other": (
            "the stand-in runs the container's command on this host, where nothing hides "
            "other folders; the real engines show only the mounts (bubblewrap proves the "
            "isolation for real)"
        ),
    }

    @pytest.fixture(autouse=True)
    def _stand_in(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
        state = tmp_path / f"{self.engine}-state"
        (state / "images").mkdir(parents=True)
        monkeypatch.setenv(f"{self.engine.upper()}_STANDIN_STATE", str(state))
        image = {"entrypoint": [sys.executable, "-m", "nanoclaw_runtimes_core.example_agent"]}
        (state / "images" / "nanoclaw-agent_latest.json").write_text(json.dumps(image))
        yield state
        leftovers = sorted(p.name for p in (state / "containers").glob("*.json"))
        assert leftovers == [], f"containers left behind: {leftovers}"

    @pytest.fixture
    def runtime_env(self) -> dict[str, str]:
        return {"CONTAINER_ENGINE": self.engine, "CONTAINER_STOP_GRACE": "1"}


class TestDockerContract(_StandinContract):
    engine = "docker"


class TestPodmanContract(_StandinContract):
    engine = "podman"


class TestAppleContainerContract(_StandinContract):
    engine = "container"
