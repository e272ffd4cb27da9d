"""The engine interface of the vibe runtime: what boots a group's disk and runs in it.

The vibe runtime keeps one persistent raw disk per group (:mod:`.images`). An
*engine* boots that disk and runs one execution in it, keeping the VM warm for
``keepWarm`` milliseconds so the next run of the group needs no boot:

- ``vibe`` (:mod:`nanoclaw_runtime_vibe.vibe_engine`): the real vibe CLI on macOS;
- ``qemu`` (:mod:`nanoclaw_runtime_vibe.qemu`): QEMU on Linux.

Both give the same contract, warm or cold: the input reaches the agent's stdin
(never a file left behind), its stdout and stderr come back as separate,
lossless streams, the exit status is the agent's, the mounts keep their modes
and the masks hide what they hide, the environment is exactly ``RunSpec.env``,
and a run never sees an earlier run's processes, environment or input.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import nanoclaw_runtimes_core as nc

if TYPE_CHECKING:
    from .settings import VibeSettings

ProgressFn = Callable[[str, float | None], None]


class RunSpec(nc.Record):
    """One execution in a group's VM.

    ``boot_key`` digests everything that shapes the VM itself (disk, base, mounts
    and their modes, masks, cpus, ram, network, engine settings): a warm VM whose
    key differs is powered off and a fresh one booted. ``agent`` is the command
    run in agent mode (the group's ``agentCommand``, else the base's default
    agent); ``command`` is set in command mode instead.
    """

    project: nc.Project
    group: nc.Group
    disk: Path
    base: Path
    mounts: tuple[nc.Mount, ...]
    masks: tuple[nc.Mask, ...]
    cpus: int
    ram_mb: int
    network: bool
    env: Mapping[str, str]
    input: bytes | None
    command: tuple[str, ...] | None
    agent: tuple[str, ...]
    keep_warm_ms: int
    boot_key: str
    run_name: str
    run_folder: Path
    """The run's private host folder (``runs_dir()/run_name``), removed when the run ends."""
    user: nc.SandboxUser
    timeout_ms: int
    debug: bool = False


class WarmVm(nc.Record, kw_only=False):
    """A group's VM kept booted between runs."""

    group: str
    engine: str
    pid: int
    started: float
    idle_until: float
    memory_mb: float
    folder: Path


class BaseBuild(nc.Record):
    """A request to build a base image at ``target`` (``{images_dir}/{vibeImage}``).

    The engine writes under temporary names in ``target.parent`` and renames onto
    ``target`` only once the build succeeded, so an interrupted or failed build
    leaves the previous base untouched (and a killed build's temporaries are swept
    by :func:`nanoclaw_runtime_vibe.images.sweep`). It also writes the base's
    metadata beside it (:func:`nanoclaw_runtime_vibe.images.write_base_info`),
    including its default agent command.
    """

    target: Path
    project_root: Path
    progress: ProgressFn
    options: Mapping[str, Any]


class Engine(Protocol):
    """What boots a disk. Stateless: every call receives the resolved settings."""

    name: str

    def status(self, settings: VibeSettings) -> nc.EngineStatus:
        """Whether this engine can boot here (and keep VMs warm); quick, never raises."""
        ...

    def run(
        self, spec: RunSpec, *, settings: VibeSettings, sink: nc.OutputSink
    ) -> nc.ExecutionResult:
        """Run one execution in the group's VM: reuse its warm VM when ``spec.boot_key``
        matches and it answers within a bounded time, else boot one (saying why when a warm
        VM was replaced). Stream stdout byte for byte to ``sink.on_stdout`` and blocks to
        ``on_output``; apply ``spec.timeout_ms`` as an idle timeout; leave no process of the run
        behind on any way out. With ``keep_warm_ms`` 0 the VM is powered off at the end."""
        ...

    def stop_warm(self, project: nc.Project, group: str, settings: VibeSettings) -> list[str]:
        """Power off the group's warm VM (before ``reset`` touches its disk); one line each."""
        ...

    def warm_vms(self, project: nc.Project, settings: VibeSettings) -> list[WarmVm]:
        """The project's warm VMs."""
        ...

    def build_base(self, build: BaseBuild, *, settings: VibeSettings) -> str:
        """Build a fresh base image at ``build.target``; return a one-line summary."""
        ...


# --------------------------------------------------------------------------- selection


def find_vibe(settings: VibeSettings) -> str | None:
    """The vibe executable named by ``VIBE_EXECUTABLE`` (a path or a name on PATH), or None."""
    exe = str(settings.executable)
    if os.sep in exe:
        p = Path(exe).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(exe)


def engine_by_name(name: str) -> Engine:
    """The engine called ``name`` (``vibe`` or ``qemu``)."""
    if name == "vibe":
        from .vibe_engine import VibeEngine

        return VibeEngine()
    from .qemu import QemuEngine

    return QemuEngine()


def auto_engine_name(settings: VibeSettings, *, platform: str | None = None) -> str:
    """What ``auto`` means here: vibe when its executable is found, else qemu on Linux."""
    if find_vibe(settings) is not None:
        return "vibe"
    if (platform or sys.platform).startswith("linux"):
        return "qemu"
    return "vibe"  # macOS without vibe: its status() says how to install it


def select_engine(settings: VibeSettings) -> Engine:
    """The engine chosen by ``settings.engine`` (``auto``, ``vibe`` or ``qemu``)."""
    name = settings.engine if settings.engine != "auto" else auto_engine_name(settings)
    return engine_by_name(name)
