"""Fixtures of the NanoClaw adapter's tests: ``docker``/``container`` links to
``nanoclaw-runtimes-docker`` on a PATH of their own, a NanoClaw project, the runtimes to run
it on (bubblewrap through the container runtime; QEMU through vibe), and NanoClaw hosts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .nanoclaw_host import NanoClawHost

HERE = Path(__file__).resolve().parent
AGENT = HERE / "agent_runner.sh"
AGENT_COMMAND = "/bin/sh /workspace/group/agent.sh"
SCRIPT = "nanoclaw-runtimes-docker"


def adapter_script() -> Path:
    """The installed console script (``pip install -e .`` makes it, as scripts/setup.sh does)."""
    found = shutil.which(SCRIPT) or str(Path(sys.executable).parent / SCRIPT)
    path = Path(found)
    if not path.exists():
        pytest.fail(f"{SCRIPT} is not installed; run scripts/setup.sh (pip install -e .)")
    return path


@pytest.fixture(scope="session")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``docker`` and ``container`` linked to the adapter: NanoClaw finds it on
    PATH exactly as it finds docker."""
    folder = tmp_path_factory.mktemp("bin")
    script = adapter_script()
    for name in ("docker", "container"):
        (folder / name).symlink_to(script)
    return folder


class QemuBase:
    """The vibe runtime's minimal base image and guest kernel, built once per session; each case
    gets an images folder of its own holding them as hard links, so its group disks
    (``{folder}.raw``) are its own."""

    def __init__(self, top: Path) -> None:
        self.images = top / "vibe-images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.built: str | None = None
        self.problem: str | None = None

    def env(self) -> dict[str, str]:
        return {
            # QEMU's KVM-or-TCG verdict (a test boot of up to 8 s) is cached there: once a session.
            "XDG_CACHE_HOME": str(self.images.parent / "cache"),
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "qemu",
            "VIBE_RAM": "512",
            "VIBE_CPUS": "2",
            # A VM stays booted 2 s after a run (the next run of the case reuses it), then
            # powers off by itself: the leftover checks wait for that.
            "VIBE_KEEP_WARM": "2000",
        }

    def ensure(self, environ: dict[str, str]) -> None:
        """Build the base unless QEMU is unavailable here (then skip, saying why)."""
        if self.problem is not None:
            pytest.skip(self.problem)
        if self.built is not None:
            return
        from nanoclaw_runtimes_core import Runtimes

        scratch = Path(tempfile.mkdtemp(prefix="nc-vibe-base-"))
        (scratch / "groups").mkdir()
        try:
            env = {**environ, **self.env(), "VIBE_IMAGES_DIR": str(self.images)}
            rt = Runtimes(scratch, environ=env)
            status = rt.engine_status("vibe")
            if status is not None and not status.available:
                self.problem = f"QEMU is unavailable here: {status.detail} {status.fix}".strip()
                pytest.skip(self.problem)
            self.built = rt.prepare(base_runtime="vibe", options={"minimal": True}) or "built"
            from nanoclaw_runtime_vibe.qemu.kernel import ensure_kernel_dir

            ensure_kernel_dir(self.images)  # else every case's first boot would build it
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def images_for(self, folder: Path) -> dict[str, str]:
        """``VIBE_IMAGES_DIR`` for one case: ``folder`` with the base and kernel linked in."""
        kernel = sorted((self.images / "kernel").iterdir())
        for item in [self.images / "base.raw", self.images / "base.raw.info.json", *kernel]:
            target = folder / item.relative_to(self.images)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(item, target)
        return {"VIBE_IMAGES_DIR": str(folder)}


@pytest.fixture(scope="session")
def qemu_base(tmp_path_factory: pytest.TempPathFactory) -> QemuBase:
    return QemuBase(tmp_path_factory.mktemp("qemu"))


class Project:
    """A NanoClaw project: ``groups/`` (with ``global``), ``data/``, ``store/``, the
    agent-runner source NanoClaw copies per group, and groups holding the test agent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "groups" / "global").mkdir(parents=True)
        (root / "groups" / "global" / "CLAUDE.md").write_text("shared memory\n")
        (root / "data").mkdir()
        (root / "store").mkdir()
        src = root / "container" / "agent-runner" / "src"
        src.mkdir(parents=True)
        (src / "index.ts").write_text("// agent-runner source (not compiled by the test agent)\n")

    def group(self, folder: str) -> Path:
        path = self.root / "groups" / folder
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy(AGENT, path / "agent.sh")
        return path

    def logs(self, folder: str, prefix: str) -> list[Path]:
        return sorted((self.root / "groups" / folder / "logs").glob(f"{prefix}-*.log"))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "nanoclaw")
    yield p
    _end_leftovers(str(p.root))


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line mentions ``text`` (a project root: bwrap's binds,
    QEMU's and virtiofsd's shares, the adapter's ``-v``), by PID; pytest itself left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line and "pytest" not in line:
            found[int(entry.name)] = line
    return found


def _end_leftovers(root: str, wait_s: float = 30.0) -> None:
    """Wait for what a case started to end (a warm VM powers off by itself), then kill what is
    left: only processes that name this case's own project."""
    deadline = time.monotonic() + wait_s
    while processes_mentioning(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_mentioning(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runs_dir() -> Iterator[Path]:
    """A runs folder of this test only (short: VM sockets live under it)."""
    top = Path(tempfile.mkdtemp(prefix="ncr-"))
    yield top / "runs"
    _kill_runs(top / "runs")
    shutil.rmtree(top, ignore_errors=True)


def _kill_runs(folder: Path) -> None:
    """Kill the ``run`` processes a failed test left behind (they are this test's own)."""
    import json

    if not folder.is_dir():
        return
    for record in folder.glob("*/run.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(int(json.loads(record.read_text())["pid"]), signal.SIGKILL)


def host_environ(
    bin_dir: Path, runs: Path, home: Path, tmp: Path, runtime_env: dict[str, str]
) -> dict[str, str]:
    """NanoClaw's environment: PATH with the adapter's links first, a home and a temp folder of
    the test's own, the runtime's settings; nothing of the developer's settings."""
    from nanoclaw_runtimes_core.testing import clean_environ

    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env = clean_environ()
    for name in [n for n in env if n.startswith(("VIBE_", "CONTAINER_", "NANOCLAW_"))]:
        del env[name]
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        TMPDIR=str(tmp),
        XDG_CACHE_HOME=str(home / ".cache"),
        NANOCLAW_RUNS_DIR=str(runs),
        NANOCLAW_MOUNT_ALLOWLIST=str(home / ".config" / "nanoclaw" / "mount-allowlist.json"),
        CONTAINER_AGENT_COMMAND=AGENT_COMMAND,
    )
    env.update(runtime_env)
    return env


on_qemu_too = pytest.mark.parametrize(
    "runtime", ["container", pytest.param("vibe", marks=pytest.mark.slow)], indirect=True
)
"""A case that runs on vibe (QEMU: a VM boots, slow under TCG) as well as on bubblewrap: the
ones where the transport between host and sandbox matters (streams, IPC, stop, mounts)."""


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime of a case: the container runtime (bubblewrap), or what ``on_qemu_too``
    names."""
    name: str = getattr(request, "param", "container")
    return name


@pytest.fixture
def environ(
    runtime: str,
    bin_dir: Path,
    runs_dir: Path,
    tmp_path: Path,
    qemu_base: QemuBase,
    project: Project,
) -> dict[str, str]:
    """NanoClaw's environment for ``runtime`` (vibe: the case's disks in the project's
    ``data/vibe-images``, vibe's default place)."""
    if runtime == "container":
        runtime_env = {
            "CONTAINER_RUNTIME": "container",
            "NANOCLAW_RUNTIMES_LOAD": "container",
            "CONTAINER_ENGINE": "bubblewrap",
        }
    else:
        runtime_env = qemu_base.env()
    env = host_environ(bin_dir, runs_dir, tmp_path / "home", tmp_path / "tmp", runtime_env)
    if runtime == "vibe":
        qemu_base.ensure(env)
        env.update(qemu_base.images_for(project.root / "data" / "vibe-images"))
    return env


PACE = {"container": 1.0, "vibe": 3.0}
"""How much longer than bubblewrap's the timers of a case are on each runtime: a VM on TCG, on a
busy host, can take seconds to boot and to run the agent's shell loops."""


@pytest.fixture
def pace(runtime: str) -> float:
    return PACE[runtime]


@pytest.fixture
def make_host(project: Project, environ: dict[str, str], pace: float) -> Any:
    """``make_host(version, **options)``: a NanoClaw host of that version over ``project``;
    ``host.pace`` is the runtime's :data:`PACE`."""

    def make(version: str, **options: Any) -> NanoClawHost:
        env = {**environ, **options.pop("env", {})}
        host = NanoClawHost(project.root, version=version, env=env, **options)
        host.pace = pace
        return host

    return make
