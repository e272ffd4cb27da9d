"""Fixtures of the QEMU engine's tests: real VMs booted from a minimal (busybox) base, driven
through ``nc.Runtimes`` as a host would."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def _missing() -> str | None:
    from nanoclaw_runtime_vibe.qemu import kernel, virtiofs

    import nanoclaw_runtimes_core as nc

    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("mkfs.ext4", "e2fsprogs")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    try:
        kernel.find_host_kernel()
        kernel.find_busybox()
        kernel.find_cc()
    except nc.EngineUnavailable as exc:
        return str(exc)
    if virtiofs.find_virtiofsd() is None:
        return "virtiofsd not found (Debian package qemu-system-x86)"
    missing = virtiofs.missing_tools()
    return f"{', '.join(missing)} not found" if missing else None


MISSING = _missing()
needs_qemu = pytest.mark.skipif(MISSING is not None, reason=f"QEMU engine unavailable: {MISSING}")


class Recorder:
    """An OutputSink that records everything, thread-safe."""

    def __init__(self) -> None:
        import nanoclaw_runtimes_core as nc

        self._lock = threading.Lock()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.outputs: list[Any] = []
        self.problems: list[str] = []
        self.first_output: float | None = None
        outer = self

        class Sink(nc.OutputSink):
            def on_stdout(self, data: bytes) -> None:
                with outer._lock:
                    outer.stdout += data

            def on_stderr(self, data: bytes) -> None:
                with outer._lock:
                    outer.stderr += data

            def on_output(self, output: Any) -> None:
                with outer._lock:
                    if outer.first_output is None:
                        outer.first_output = time.monotonic()
                    outer.outputs.append(output)

            def on_problem(self, message: str) -> None:
                with outer._lock:
                    outer.problems.append(message)

        self.sink = Sink()


class QemuProject:
    """A temporary NanoClaw project whose groups run on the vibe runtime's QEMU engine."""

    def __init__(self, root: Path, shared_images: Path) -> None:
        self.root = root
        self.images = root / "data" / "vibe-images"
        self.images.mkdir(parents=True)
        (root / "groups" / "global").mkdir(parents=True, exist_ok=True)
        # A hard link: the base's metadata names its inode (a copy would lose its default agent).
        os.link(shared_images / "base.raw", self.images / "base.raw")
        shutil.copyfile(shared_images / "base.raw.info.json", self.images / "base.raw.info.json")
        (self.images / "kernel").symlink_to(shared_images / "kernel")
        self.env: dict[str, str] = {
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "qemu",
            "VIBE_RAM": "256",
            "VIBE_CPUS": "2",
            "VIBE_KEEP_WARM": "60000",
        }

    def group(self, folder: str, config: dict[str, Any] | None = None) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (path / "config.json").write_text(json.dumps(config))
        return path

    def runtimes(self) -> Any:
        from nanoclaw_runtimes_core import Runtimes

        return Runtimes(self.root, environ={**os.environ, **self.env})

    def command(self, folder: str, script: str, **kw: Any) -> tuple[Any, Recorder]:
        rec = Recorder()
        result = self.runtimes().execute(folder, command=["sh", "-c", script], sink=rec.sink, **kw)
        return result, rec

    def agent(self, folder: str, prompt: str, **kw: Any) -> tuple[Any, Recorder]:
        from nanoclaw_runtimes_core.models import ContainerInput

        secrets = kw.pop("secrets", None)
        inp = ContainerInput(
            prompt=prompt, group_folder=folder, chat_jid="t@g.us", is_main=False, secrets=secrets
        )
        rec = Recorder()
        return self.runtimes().execute(folder, input=inp, sink=rec.sink, **kw), rec

    def warm(self) -> dict[str, Any]:
        """The project's warm VMs by group."""
        from nanoclaw_runtime_vibe.qemu import QemuEngine

        rt = self.runtimes()
        settings = rt.runtime_settings("vibe")
        return {vm.group: vm for vm in QemuEngine().warm_vms(rt.project, settings)}

    def vm_folder(self, group: str) -> Path:
        from nanoclaw_runtime_vibe.qemu import vmstate

        return vmstate.folder_of(self.runtimes().project, group)

    def stop_all(self) -> None:
        rt = self.runtimes()
        for group in list(self.warm()):
            rt.reset(group, scope="warm")


@pytest.fixture(scope="session")
def shared_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal base and the kernel files, built once for the session."""
    if MISSING is not None:
        pytest.skip(f"QEMU engine unavailable: {MISSING}")
    from nanoclaw_runtimes_core import Runtimes

    root = tmp_path_factory.mktemp("qemu-base") / "project"
    (root / "groups" / "global").mkdir(parents=True)
    env = {**os.environ, "NANOCLAW_RUNTIMES_LOAD": "vibe", "VIBE_ENGINE": "qemu"}
    Runtimes(root, environ=env).prepare(base_runtime="vibe", options={"minimal": True})
    return root / "data" / "vibe-images"


@pytest.fixture
def qproject(tmp_path: Path, shared_images: Path) -> Iterator[QemuProject]:
    """A project with its own copy of the minimal base; its VMs are powered off after."""
    project = QemuProject(tmp_path / "project", shared_images)
    try:
        yield project
    finally:
        project.stop_all()
        left = vm_processes(str(project.images))
        if left:  # the guest may still be powering off: give it a bounded while
            wait_until(lambda: not vm_processes(str(project.images)), 20)
        assert vm_processes(str(project.images)) == [], f"a VM of the test was left running: {left}"


def vm_processes(needle: str) -> list[str]:
    """Command lines of live qemu / virtiofsd processes that mention ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv).decode("utf-8", errors="replace")
        if needle in line and ("qemu-system" in line or "virtiofsd" in line):
            found.append(line)
    return found


def wait_until(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class Deadline(Exception):
    """A test ran past its deadline."""


@pytest.fixture(autouse=True)
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test here ends within its deadline (``@pytest.mark.deadline(seconds)``, default
    240 s): a hung VM fails the test instead of hanging the suite."""
    import signal

    marker = request.node.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else 240

    def expired(signum: int, frame: object) -> None:
        raise Deadline(f"the test ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): the test's time limit")
