"""Fixtures of the vibe runtime's tests: a project whose groups run on the vibe engine through
the vibe stand-in (tests/standins/vibe), and helpers to look at what it did."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "vibe"
AGENT = Path(__file__).resolve().parent / "agent.py"
MiB = 2**20
SANDBOX_ID = 1_000_000_000


def _guest_possible() -> bool:
    """Whether bubblewrap can make the stand-in's guest here (a user namespace with
    capabilities, as root or not)."""
    if shutil.which("bwrap") is None or shutil.which("unshare") is None:
        return False
    if not Path("/usr/bin/python3").exists():
        return False
    probe = subprocess.run(
        ["bwrap", "--unshare-all", "--unshare-user", "--uid", "0", "--cap-add", "ALL",
         "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


needs_bwrap = pytest.mark.skipif(
    not _guest_possible(),
    reason="the vibe stand-in runs its guest in bubblewrap, in a user namespace, with util-linux "
    "(Debian packages bubblewrap, util-linux) and the test agent with /usr/bin/python3",
)


def make_sparse(path: Path, size: int, data_mib: int = 0, *, seed: int = 1) -> None:
    """A sparse file of ``size`` bytes with ``data_mib`` MiB of data in 1 MiB pieces (none at
    offset 0, so the stand-in sees a blank file system)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        if data_mib:
            step = size // (data_mib + 1)
            for i in range(1, data_mib + 1):
                f.seek(i * step)
                f.write(rng.randbytes(MiB))


class Sink(nc.OutputSink):
    """Keeps everything a run streams."""

    def __init__(self) -> None:
        self.outputs: list[nc.ContainerOutput] = []
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def on_output(self, output: nc.ContainerOutput) -> None:
        self.outputs.append(output)

    def on_stdout(self, data: bytes) -> None:
        with self.lock:
            self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        with self.lock:
            self.stderr += data

    def on_problem(self, message: str) -> None:
        self.problems.append(message)


class VibeProject:
    """A NanoClaw project whose groups run on vibe, through the stand-in."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "project"
        self.state = base / "standin-state"
        self.images = self.root / "data" / "vibe-images"
        (self.root / "groups" / "global").mkdir(parents=True)
        self.images.mkdir(parents=True)
        self.state.mkdir(mode=0o777)
        self.vm_uid = SANDBOX_ID if os.geteuid() == 0 else os.getuid()
        if os.geteuid() == 0:
            os.chown(self.state, SANDBOX_ID, SANDBOX_ID)
        self.executable = base / "vibe"
        self.executable.write_text(
            f'#!/bin/sh\nVIBE_STANDIN_STATE={self.state} exec {STANDIN} "$@"\n'
        )
        self.executable.chmod(0o755)
        self.env: dict[str, str] = {
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "vibe",
            "VIBE_EXECUTABLE": str(self.executable),
            "VIBE_RAM": "512",
            "VIBE_CPUS": "1",
            "VIBE_KEEP_WARM": "0",
            "CONTAINER_AGENT_COMMAND": "/usr/bin/python3 /workspace/group/agent.py",
        }

    # ------------------------------------------------------------------ layout

    def group(self, folder: str, config: dict[str, Any] | None = None) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (path / "config.json").write_text(json.dumps(config))
        shutil.copy(AGENT, path / "agent.py")
        (path / "agent.py").chmod(0o644)
        return path

    def base_image(self, name: str = "base.raw", size: int = 64 * MiB, data_mib: int = 0) -> Path:
        path = self.images / name
        make_sparse(path, size, data_mib)
        return path

    def runtimes(self, **env: str) -> nc.Runtimes:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIBE_", "CONTAINER_"))}
        return nc.Runtimes(self.root, environ={**clean, **self.env, **env})

    def ask(
        self,
        folder: str,
        prompt: str,
        *,
        secrets: dict[str, str] | None = None,
        timeout_ms: int | None = None,
        sink: Sink | None = None,
        **env: str,
    ) -> nc.ExecutionResult:
        inp = nc.ContainerInput(
            prompt=prompt,
            group_folder=folder,
            chat_jid="chat@g.us",
            is_main=False,
            secrets=secrets,
        )
        return self.runtimes(**env).execute(
            folder, input=inp, sink=sink or Sink(), timeout_ms=timeout_ms
        )

    # ------------------------------------------------------------------ what the stand-in saw

    def boots(self) -> list[dict[str, Any]]:
        path = self.state / "boots.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def starts(self) -> list[dict[str, Any]]:
        return [b for b in self.boots() if b["event"] == "start"]

    def overlaps(self) -> list[dict[str, Any]]:
        path = self.state / "overlaps.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def vm_folders(self) -> list[Path]:
        area = vm_area()
        return sorted(p for p in area.glob("vm-*")) if area.is_dir() else []


def vm_area() -> Path:
    from nanoclaw_runtime_vibe import rundir

    return rundir.area(for_other_user=os.geteuid() == 0)


def answer(result: nc.ExecutionResult) -> dict[str, Any]:
    assert result.outputs, f"no output block: {result.error_message()} {result.stderr_tail}"
    text = result.outputs[0].result
    assert text is not None
    data: dict[str, Any] = json.loads(text)
    return data


def wait_for(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if st.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


@pytest.fixture
def vproject(monkeypatch: pytest.MonkeyPatch) -> Iterator[VibeProject]:
    """A project in a fresh folder every user may traverse (the VM runs as the sandbox user
    when the tests run as root), removed afterwards with every VM it left."""
    base = Path(tempfile.mkdtemp(prefix="nanoclaw-vibe-test-"))
    os.chmod(base, 0o711)
    for var in [v for v in os.environ if v.startswith(("VIBE_", "CONTAINER_"))]:
        monkeypatch.delenv(var)
    vp = VibeProject(base)
    try:
        yield vp
    finally:
        _stop_all(vp)
        _make_removable(base)
        shutil.rmtree(base, ignore_errors=True)


def _stop_all(vp: VibeProject) -> None:
    from nanoclaw_runtime_vibe import rundir

    for folder in vp.vm_folders():
        vm = rundir.VmFolder(folder)
        record = vm.record() or {}
        if record.get("project") != str(vp.root):
            continue
        from nanoclaw_runtime_vibe.vibe_engine import VibeEngine

        VibeEngine()._kill(vm)
        vm.remove()


def _make_removable(base: Path) -> None:
    for folder, dirs, _files in os.walk(base):
        for d in dirs:
            p = Path(folder) / d
            if not p.is_symlink():
                os.chmod(p, os.stat(p).st_mode | stat.S_IRWXU)


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that runs past its bound instead of hanging the suite (the runtime's own
    timeouts must end every run long before)."""
    import signal

    limit = 240.0 if request.node.get_closest_marker("slow") else 120.0

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"{request.node.name} ran past {limit:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def secret_files(roots: list[Path], secret: bytes) -> list[str]:
    """Files under ``roots`` whose content holds ``secret`` (links not followed)."""
    found = []
    for root in roots:
        if not root.exists():
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    with open(path, "rb") as f:
                        if secret in f.read(64 * MiB):
                            found.append(str(path))
                except OSError:
                    continue
    return found


def runs_area() -> Path:
    return nc.runs_dir()
