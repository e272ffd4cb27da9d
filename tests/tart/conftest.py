"""Fixtures of the tart runtime's tests: a project whose groups run on tart through the stand-in.

The stand-in's base VM ``testbase`` has the test agent installed on its disk at
``/Users/admin/agent.py`` (as a real base image would have the agent), and every
group's agent command points there. Every test has a watchdog: a broken runtime
fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc

HERE = Path(__file__).resolve().parent
STANDIN = HERE.parent / "standins" / "tart"
AGENT = HERE / "fake_agent.py"
OCI_BASE = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
BASE = "testbase"
GUEST_AGENT = "/Users/admin/agent.py"
WATCHDOG_S = 150

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or not Path("/usr/bin/python3").exists(),
    reason="the tart stand-in runs its guest in bubblewrap with /usr/bin/python3 "
    "(Debian packages bubblewrap, python3; scripts/setup.sh installs them)",
)


class RecordingSink(nc.OutputSink):
    """Keeps everything a run sends."""

    def __init__(self) -> None:
        self.outputs: list[nc.ContainerOutput] = []
        self.stdout = b""
        self.stderr = b""
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def on_output(self, output: nc.ContainerOutput) -> None:
        self.outputs.append(output)

    def on_stdout(self, data: bytes) -> None:
        with self._lock:
            self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        with self._lock:
            self.stderr += data

    def on_problem(self, message: str) -> None:
        self.problems.append(message)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


class TartLab:
    """A NanoClaw project on the tart runtime, the stand-in's tart home and the runtime's state."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.root = tmp / "project"
        (self.root / "groups" / "global").mkdir(parents=True)
        self.home = tmp / "tart-home"
        self.state = tmp / "tart-state"
        for var in [v for v in os.environ if v.startswith("TART_") or v == "CONTAINER_TIMEOUT"]:
            monkeypatch.delenv(var)
        self.env = {
            "CONTAINER_RUNTIME": "tart",
            "NANOCLAW_RUNTIMES_LOAD": "tart",
            "TART_EXECUTABLE": str(STANDIN),
            "TART_HOME": str(self.home),
            "TART_STATE_DIR": str(self.state),
            "TART_BASE_IMAGE": BASE,
            "TART_STANDIN_BOOT_S": "0.3",
            "TART_BOOT_TIMEOUT": "30000",
            "TART_STOP_TIMEOUT": "5",
            "CONTAINER_AGENT_COMMAND": f"/usr/bin/python3 {GUEST_AGENT}",
        }
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        self.tart("clone", OCI_BASE, BASE, check=True)
        disk_home = self.home / "vms" / BASE / "disk" / "Users" / "admin"
        shutil.copy(AGENT, disk_home / "agent.py")
        self.foreign: set[str] = {BASE}
        self.user_pids: set[int] = set()

    # ------------------------------------------------------------------ setup

    def group(self, folder: str, config: dict[str, Any] | None = None) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (path / "config.json").write_text(json.dumps({"containerConfig": config}))
        return path

    def runtimes(self) -> nc.Runtimes:
        from nanoclaw_runtimes_core.plugins import Registry

        registry = Registry()
        registry.load_entry_points(["tart"])
        return nc.Runtimes(self.root, environ=dict(os.environ), registry=registry)

    def run(
        self, folder: str, prompt: str = "ok", *, secrets: dict[str, str] | None = None, **kw: Any
    ) -> tuple[nc.ExecutionResult, RecordingSink]:
        self.group(folder)
        sink = RecordingSink()
        result = self.runtimes().execute(
            folder, input=self.input(folder, prompt, secrets), sink=sink, **kw
        )
        return result, sink

    def input(
        self, folder: str, prompt: str, secrets: dict[str, str] | None = None
    ) -> nc.ContainerInput:
        return nc.ContainerInput(
            prompt=prompt,
            group_folder=folder,
            chat_jid=f"{folder}@g.us",
            is_main=False,
            secrets=secrets,
        )

    def cli(
        self, *args: str, prompt: str | None = None, folder: str = "g1"
    ) -> subprocess.Popen[bytes]:
        """``nanoclaw-runtimes --root ROOT ARGS``, the ContainerInput of ``prompt`` on stdin."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "nanoclaw_runtimes_core", "--root", str(self.root), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        if prompt is not None:
            body = {"prompt": prompt, "groupFolder": folder, "chatJid": "x@g.us", "isMain": False}
            proc.stdin.write(json.dumps(body).encode())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it
        return proc

    # ------------------------------------------------------------------ the stand-in

    def tart(self, *args: str, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(STANDIN), *args], capture_output=True, text=True, timeout=60, check=False, **kw
        )
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def start_vm(self, name: str) -> subprocess.Popen[bytes]:
        """A VM the user runs (not through the runtime)."""
        proc = subprocess.Popen(
            [str(STANDIN), "run", name, "--no-graphics"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.user_pids.add(proc.pid)
        wait_for(lambda: self.running(name), what=f"{name} running")
        return proc

    def vms(self) -> dict[str, dict[str, Any]]:
        out = self.tart("list", "--source", "local", "--format", "json", check=True)
        return {row["Name"]: row for row in json.loads(out.stdout)}

    def running(self, name: str) -> bool:
        return bool(self.vms().get(name, {}).get("Running"))

    def ours(self) -> set[str]:
        """The VMs that are not the base or the user's."""
        return set(self.vms()) - self.foreign

    def calls(self) -> list[list[str]]:
        path = self.home / "calls.jsonl"
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def events(self) -> list[dict[str, Any]]:
        path = self.home / "events.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def records(self) -> list[str]:
        folder = self.state / "vms"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def processes(self) -> list[int]:
        """Live processes that belong to this lab's tart home (VMs, guests, reapers)."""
        found = []
        marker = str(self.home).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in (os.getpid(), *self.user_pids):
                continue
            with contextlib.suppress(OSError):
                text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                status = (entry / "status").read_text()
                if marker in text and "State:\tZ" not in status:
                    found.append(int(entry.name))
        return found

    def assert_clean(self, timeout: float = 20.0) -> None:
        """Zero residue: no VM of ours, no record, no process, every start stopped."""
        wait_for(lambda: not self.ours(), timeout, what=f"our VMs to go: {self.ours()}")
        wait_for(lambda: not self.records(), timeout, what=f"records to go: {self.records()}")
        wait_for(lambda: not self.processes(), timeout, what="processes to end")
        mine = [e for e in self.events() if e["name"] not in self.foreign]
        starts = [e for e in mine if e["event"] == "start"]
        stops = [e for e in mine if e["event"] == "stop"]
        assert len(starts) == len(stops), "a VM was started and never stopped"

    def kill_all(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TartLab]:
    """A project on tart; kills whatever a failed test left running."""
    if shutil.which("bwrap") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("the tart stand-in needs bubblewrap and /usr/bin/python3 (scripts/setup.sh)")
    made = TartLab(tmp_path, monkeypatch)
    yield made
    made.kill_all()


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Fail a test that runs longer than WATCHDOG_S instead of hanging the suite."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"test still running after {WATCHDOG_S} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
