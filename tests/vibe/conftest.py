"""Fixtures of the vibe runtime's tests: a project, the vibe stand-in, a test agent."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.testing import RecordingSink

STANDINS = Path(__file__).resolve().parents[1] / "standins"
VIBE_STANDIN = STANDINS / "vibe"
AGENT = Path(__file__).resolve().parent / "agent.py"
MiB = 2**20

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or not Path("/usr/bin/python3").exists(),
    reason="the vibe stand-in runs its guest in bubblewrap (bwrap), the test agent with "
    "/usr/bin/python3 (Debian packages bubblewrap, python3)",
)


def make_sparse(path: Path, size: int, data_mib: int = 0, *, seed: int = 1) -> None:
    """A sparse file of ``size`` bytes with ``data_mib`` MiB of data in 1 MiB pieces spread out."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        if data_mib:
            step = size // data_mib
            for i in range(data_mib):
                f.seek(i * step)
                f.write(rng.randbytes(MiB))


class VibeProject:
    """A temporary NanoClaw project whose groups run on the vibe runtime through the stand-in."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state
        self.images = root / "data" / "vibe-images"
        (root / "groups" / "global").mkdir(parents=True)
        self.images.mkdir(parents=True)
        self.env: dict[str, str] = {
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "vibe",
            "VIBE_EXECUTABLE": str(VIBE_STANDIN),
            "VIBE_AGENT_COMMAND": "/usr/bin/python3 /workspace/group/agent.py",
            "VIBE_RAM": "512",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }

    def group(self, folder: str, config: dict | None = None, *, agent: bool = True) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (path / "config.json").write_text(json.dumps(config))
        if agent:
            shutil.copy(AGENT, path / "agent.py")
        return path

    def base(self, name: str = "base.raw", size: int = 64 * MiB) -> Path:
        path = self.images / name
        make_sparse(path, size)
        return path

    def runtimes(self):
        from nanoclaw_runtimes_core import Runtimes

        return Runtimes(self.root, environ={**os.environ, **self.env})

    def boots(self) -> list[dict]:
        path = self.state / "boots.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def overlaps(self) -> list[dict]:
        path = self.state / "overlaps.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def intervals(self, disk: Path) -> list[tuple[float, float]]:
        """(start, end) of each finished boot of ``disk``."""
        starts: dict[int, float] = {}
        spans = []
        for b in self.boots():
            if b["disk"] != str(disk.resolve()):
                continue
            if b["event"] == "start":
                starts[b["pid"]] = b["start"]
            elif b["pid"] in starts:
                spans.append((starts.pop(b["pid"]), b["end"]))
        return spans


@pytest.fixture
def vproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VibeProject:
    state = tmp_path / "standin-state"
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)  # vibe's default mounts would pick this up
    (home / ".claude" / "credentials.json").write_text('{"token": "host-secret"}')
    monkeypatch.setenv("VIBE_STANDIN_STATE", str(state))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in [v for v in os.environ if v.startswith("VIBE_") and v != "VIBE_STANDIN_STATE"]:
        monkeypatch.delenv(var)
    return VibeProject(tmp_path / "project", state)


# An OutputSink that keeps everything (the core's test kit has it).
Collect = RecordingSink


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
