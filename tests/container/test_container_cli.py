"""Through the real command line: SIGTERM or Ctrl-C of `nanoclaw-runtimes run` takes the
sandbox down with it, on bubblewrap and on a docker (stand-in) container."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys

import pytest
from nanoclaw_runtime_container.engines import bubblewrap

from .container_helpers import ProjectHelper, Standins, processes_with, wait_until

CLI = [sys.executable, "-m", "nanoclaw_runtimes_core"]


def start_cli(project: ProjectHelper, marker: str, env: dict[str, str]) -> subprocess.Popen[str]:
    project.group("dev")
    return subprocess.Popen(
        [*CLI, "--root", str(project.root), "run", "--runtime", "container", "dev", "--",
         "sh", "-c", f"sleep {marker} & echo started; wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip


def sandbox_running(marker: str) -> bool:
    return any(p.split(": ", 1)[1].startswith(f"sleep {marker}") for p in processes_with(marker))


def interrupt_and_check(cli: subprocess.Popen[str], marker: str, sig: int) -> None:
    assert wait_until(lambda: sandbox_running(marker), 30), cli.stderr and cli.poll()
    cli.send_signal(sig)
    try:
        code = cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert code != 0
    assert wait_until(lambda: not processes_with(marker), 15), processes_with(marker)


@pytest.mark.skipif(
    shutil.which("bwrap") is None or not bubblewrap.probe(shutil.which("bwrap") or "").works,
    reason="bubblewrap (bwrap) is not installed or cannot create a sandbox here",
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_cli_ends_the_bubblewrap_sandbox(project: ProjectHelper, sig: int) -> None:
    marker = f"{secrets.randbelow(8000) + 1000}.{secrets.randbelow(10**6)}"
    env = {"CONTAINER_ENGINE": "bubblewrap", "CONTAINER_STOP_GRACE": "1"}
    interrupt_and_check(start_cli(project, marker, env), marker, sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_cli_removes_the_docker_container(
    project: ProjectHelper, standins: Standins, sig: int
) -> None:
    standins.add_image("docker", "nanoclaw-agent:latest", [], cmd=["sh"])
    marker = f"{secrets.randbelow(8000) + 1000}.{secrets.randbelow(10**6)}"
    env = {"CONTAINER_ENGINE": "docker", "CONTAINER_STOP_GRACE": "1"}
    interrupt_and_check(start_cli(project, marker, env), marker, sig)
    assert standins.containers("docker") == []
    assert any(call[1] in ("stop", "kill") for call in standins.calls("docker"))
