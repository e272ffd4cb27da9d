"""Fixtures of the QEMU engine's tests: real VMs booted from a minimal (busybox) base."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
AGENT = HERE / "agent.sh"


def _missing() -> str | None:
    from nanoclaw_runtime_vibe.qemu import kernel, virtiofs

    from nanoclaw_runtimes_core.errors import EngineUnavailable

    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed (Debian package e2fsprogs)"
    try:
        kernel.find_host_kernel()
        kernel.find_busybox()
        daemon = virtiofs.find_virtiofsd()
    except EngineUnavailable as exc:
        return str(exc)
    return virtiofs.check_usable(daemon)


MISSING = _missing()
needs_qemu = pytest.mark.skipif(MISSING is not None, reason=f"QEMU engine unavailable: {MISSING}")


class QemuProject:
    """A temporary NanoClaw project whose groups run on the vibe runtime's QEMU engine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "data" / "vibe-images"
        (root / "groups" / "global").mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "qemu",
            "VIBE_AGENT_COMMAND": "/bin/sh /workspace/group/agent.sh",
            "VIBE_RAM": "512",
            "VIBE_CPUS": "2",
        }

    def group(self, folder: str, config: dict | None = None) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (path / "config.json").write_text(json.dumps(config))
        shutil.copy(AGENT, path / "agent.sh")
        return path

    def runtimes(self):
        from nanoclaw_runtimes_core import Runtimes

        return Runtimes(self.root, environ={**os.environ, **self.env})

    def build_minimal_base(self) -> str:
        return self.runtimes().prepare(base_runtime="vibe", options={"minimal": True})

    def agent(self, folder: str, prompt: str, **kw):
        from nanoclaw_runtimes_core.models import ContainerInput

        inp = ContainerInput(prompt=prompt, group_folder=folder, chat_jid="t@g.us", is_main=False)
        return self.runtimes().execute(folder, input=inp, **kw)


@pytest.fixture
def qproject(tmp_path: Path) -> QemuProject:
    """A project with a freshly built minimal base."""
    if MISSING is not None:
        pytest.skip(f"QEMU engine unavailable: {MISSING}")
    p = QemuProject(tmp_path / "project")
    p.build_minimal_base()
    return p


def vm_processes(needle: str) -> list[str]:
    """Command lines (arguments joined by spaces) of live qemu / virtiofsd processes that
    mention ``needle``."""
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
