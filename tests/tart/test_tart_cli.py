"""The tart runtime through the real command line, with its settings read from ``.env``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tart_harness import AGENT, SECRET, STANDIN, assert_no_vms, wait_for

pytest.importorskip("nanoclaw_runtimes_core.cli")


@pytest.fixture
def project(root: Path, slots: Path) -> Path:
    (root / "groups" / "g1").mkdir(parents=True)
    (root / ".env").write_text(
        f"TART_EXECUTABLE={STANDIN}\n"
        f"TART_AGENT_COMMAND={sys.executable}, {AGENT}\n"
        f"TART_SLOTS_DIR={slots}\n"
    )
    return root


def cli(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nanoclaw_runtimes_core", "--root", str(root), *args]


def agent_input(prompt: str) -> str:
    return json.dumps(
        {
            "prompt": prompt,
            "groupFolder": "g1",
            "chatJid": "c@g.us",
            "isMain": False,
            "secrets": {"API_KEY": SECRET},
        }
    )


def test_run_through_the_cli(state, project):
    out = subprocess.run(
        cli(project, "run", "--runtime", "tart", "g1"),
        input=agent_input("ok"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("---NANOCLAW_OUTPUT_START---") == 2
    assert '"result": "hello g1"' in out.stdout
    assert_no_vms(state)
    for path in [*project.rglob("*"), *state.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_sigterm_to_the_cli_leaves_no_vm(state, project, tmp_path):
    stdin = tmp_path / "input.json"
    stdin.write_text(agent_input("hang"))
    with stdin.open() as handle:
        proc = subprocess.Popen(
            cli(project, "run", "--runtime", "tart", "g1"),
            stdin=handle,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    wait_for((project / "groups" / "g1" / "agent.pid").exists, timeout=60)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    stdin.unlink()
    assert_no_vms(state)
