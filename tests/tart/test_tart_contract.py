"""The core's contract suite, run against the tart runtime and its stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tart_harness import STANDIN

from nanoclaw_runtimes_core.testing import nanoclaw_project  # noqa: F401 (a fixture)
from nanoclaw_runtimes_core.testing.contract import RuntimeContract

pytestmark = pytest.mark.slow  # boots 17 simulated VMs through the dispatcher


class TestTartContract(RuntimeContract):
    runtime_name = "tart"
    runtime_distribution = "nanoclaw-runtime-tart"
    # In a real macOS guest the agent starts in /Volumes/My Shared Files/group; the stand-in
    # shows that share as a link to the host folder, which is what `pwd` reports here.
    workspace_in_sandbox = None
    short_timeout_ms = 3000
    skip_tests = {
        "test_groups_do_not_see_each_other": (
            "the stand-in runs guest commands on this host, where the folder above a share is "
            "the host's groups/ folder; a real VM sees only its own shares (and a fresh home, "
            "which the stand-in does reproduce)"
        ),
    }

    @pytest.fixture(autouse=True)
    def _stand_in(self, state: Path) -> None:
        """The stand-in's VM list (the `state` fixture), and zero VMs left after each test."""
        yield
        vms = state / "vms"
        assert (
            not [p for p in vms.iterdir() if not p.name.startswith(".")] if vms.exists() else True
        )

    @pytest.fixture
    def runtime_env(self, slots: Path) -> dict[str, str]:
        return {
            "TART_EXECUTABLE": str(STANDIN),
            "TART_AGENT_COMMAND": f"{sys.executable}, -m, nanoclaw_runtimes_core.example_agent",
            "TART_SLOTS_DIR": str(slots),
        }
