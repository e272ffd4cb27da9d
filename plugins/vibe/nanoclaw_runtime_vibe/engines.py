"""The engine interface: what boots a group's disk, and how one is chosen.

The vibe runtime keeps one persistent raw disk per group and runs one
generated script in a VM booted from it. Everything except booting is shared
(image lifecycle, the run folder, the script, reading results back); an
*engine* only boots. Two engines exist:

- ``vibe`` (:mod:`nanoclaw_runtime_vibe.vibe_engine`): the real vibe CLI on
  macOS (Virtualization.framework).
- ``qemu`` (:mod:`nanoclaw_runtime_vibe.qemu`): QEMU on Linux, booting the same
  kind of disk. The package ``nanoclaw_runtime_vibe.qemu`` must export a class
  ``QemuEngine`` whose no-argument constructor builds an :class:`Engine`.

The protocol between the runtime and the guest script is the same for every
engine, so the script and the result handling never depend on the engine:

- ``spec.run_dir`` is a private host folder (mode 0700) holding the script
  (``spec.script``) and ``input.json`` (the ContainerInput, mode 0600). It is
  in ``spec.mounts`` like any other mount, read-only at :data:`GUEST_RUN_DIR`.
- The engine makes the guest run ``spec.script`` once as root, with
  ``/bin/sh`` semantics (the file starts with ``#!/bin/sh``), and stdin that
  must not be relied upon. vibe types it into the console; an engine may as
  well execute ``GUEST_RUN_DIR/<script name>`` from the share.
- The script prints its exit status as a line ``STATUS_MARKER<int>`` on the
  console and then powers the guest off. The engine streams the console
  through the ``decoder`` it is given (built with
  ``MarkerDecoder(status_marker=STATUS_MARKER)``), so output blocks reach the
  sink as they arrive and ``ProcessResult.reported_status`` holds the
  script's status. The engine's own exit code says only whether the VM ran.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from attrs import define, field

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import EngineStatus, Mount, OutputSink

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.process import ProcessResult
    from nanoclaw_runtimes_core.protocol import MarkerDecoder

GUEST_RUN_DIR = "/nanoclaw/run"
"""Where the run folder (script + input.json) is shared, read-only, in the guest."""

INPUT_NAME = "input.json"
"""The ContainerInput file's name inside the run folder."""

STATUS_MARKER = "---NANOCLAW_EXIT_STATUS---:"
"""Prefix of the console line that carries the script's own exit status."""

CONSOLE_BEGIN = "---NANOCLAW_CONSOLE_BEGIN---"
"""Console line printed right before the agent or command starts (command-mode passthrough)."""

CONSOLE_END = "---NANOCLAW_CONSOLE_END---"
"""Printed right after the agent or command ends, before the status line."""

ENGINE_NAMES = ("vibe", "qemu")
"""Engines a user may name in ``VIBE_ENGINE`` / ``engine`` (besides ``auto``)."""

ProgressFn = Callable[[str, "float | None"], None]


@define(frozen=True, kw_only=True)
class BootSpec:
    """One boot of one disk: what to attach, share and run.

    ``disk`` is attached read-write and is the guest's persistent state; the
    caller guarantees no other boot of the same disk runs at the same time
    (group lock for group disks, a build lock for bases). ``mounts`` are every
    share the guest sees, already validated, the run folder included (at
    :data:`GUEST_RUN_DIR`, read-only); an engine passes them as they are and
    adds none of its own. ``script`` lies inside ``run_dir``. ``purpose`` is
    ``"run"`` for an execution and ``"provision"`` for a base build (an engine
    may give provisioning a network or a longer boot timeout).
    """

    disk: Path
    base: Path
    """The base image the group's disk came from (or the base being built). Files an
    engine keeps beside a base (a kernel, an initramfs) are found from it."""
    mounts: tuple[Mount, ...]
    cpus: int
    ram_mb: int
    script: Path
    run_dir: Path
    purpose: Literal["run", "provision"] = "run"
    env: Mapping[str, str] = field(factory=dict)
    """Extra environment for the engine's host process (never secrets)."""


@define(frozen=True, kw_only=True)
class BaseBuild:
    """A request to build a base image at ``target`` (``{images_dir}/{vibeImage}``).

    The engine writes under temporary names in ``target.parent`` and renames
    onto ``target`` only once the build succeeded (see
    :func:`nanoclaw_runtime_vibe.cow.atomic_output`), so an interrupted or
    failed build leaves the previous base untouched and no temporary behind.
    Files an engine keeps beside a base (a kernel, an initramfs) follow the
    same rule. ``project_root`` is where the engine may find optional inputs
    (e.g. NanoClaw's ``container/agent-runner``); ``options`` are the
    ``prepare --base`` options (e.g. ``{"minimal": True}``).
    """

    target: Path
    project_root: Path
    progress: ProgressFn
    options: Mapping[str, Any] = field(factory=dict)


@runtime_checkable
class Engine(Protocol):
    """What boots a disk. Stateless: every call receives the resolved settings."""

    name: str
    """``"vibe"`` or ``"qemu"``; shown in ``doctor``, errors and stats notes."""

    def status(self, settings: Any) -> EngineStatus:
        """Whether this engine can boot here; quick, starts nothing, never raises."""
        ...

    def boot(
        self,
        spec: BootSpec,
        *,
        settings: Any,
        sink: OutputSink,
        timeout_ms: int,
        decoder: MarkerDecoder,
        raw_stdout: Callable[[bytes], None] | None = None,
        passthrough: bool = False,
    ) -> ProcessResult:
        """Boot ``spec.disk``, run ``spec.script``, return when the VM is gone.

        Streams the console through ``decoder`` into ``sink`` (run it with
        :func:`nanoclaw_runtimes_core.process.run_streaming`, which applies
        ``timeout_ms`` as an idle timeout reset by every output block, and
        ``passthrough`` / ``raw_stdout`` as documented there). On timeout, error
        or KeyboardInterrupt nothing may keep running: the engine process and
        the VM are killed before this returns or raises. Raises
        :class:`~nanoclaw_runtimes_core.errors.UserError` for a problem found
        before booting (bad mount path, engine missing); a VM that ran and
        failed is a ``ProcessResult``, not an exception.
        """
        ...

    def build_base(self, build: BaseBuild, *, settings: Any) -> str:
        """Build a fresh base image at ``build.target``; return a one-line summary.

        Long work reports through ``build.progress(message, fraction|None)``.
        Interruption or failure leaves the previous base and its companion files
        untouched (temporary names, rename at the end, cleanup in ``finally``).
        The caller holds the base-build lock of ``build.target``.
        """
        ...


# --------------------------------------------------------------------------- selection


def find_vibe(settings: Any) -> str | None:
    """The vibe executable named by ``VIBE_EXECUTABLE`` (a path or a name on PATH), or None."""
    exe = str(settings.executable)
    if os.sep in exe or (os.altsep and os.altsep in exe):
        p = Path(exe).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(exe)


def engine_by_name(name: str) -> Engine:
    """The engine called ``name`` (``vibe`` or ``qemu``)."""
    if name == "vibe":
        from .vibe_engine import VibeEngine

        return VibeEngine()
    if name == "qemu":
        try:
            from .qemu import QemuEngine  # type: ignore[attr-defined]
        except ImportError as exc:
            raise EngineUnavailable(
                f"the QEMU engine of the vibe runtime could not be loaded ({exc}); "
                "reinstall nanoclaw-runtime-vibe, or set VIBE_ENGINE=vibe"
            ) from exc
        return QemuEngine()
    raise UserError(
        f"unknown vibe engine {name!r} (VIBE_ENGINE / containerConfig.engine): "
        f"use auto, {', '.join(ENGINE_NAMES)}"
    )


def auto_engine_name(settings: Any, *, platform: str | None = None) -> str:
    """What ``auto`` means here: vibe when its executable is found, else qemu on Linux."""
    if find_vibe(settings) is not None:
        return "vibe"
    if (platform or sys.platform).startswith("linux"):
        return "qemu"
    return "vibe"  # macOS without vibe: its status() says how to install it


def select_engine(settings: Any) -> Engine:
    """The engine chosen by ``settings.engine`` (``auto``, ``vibe`` or ``qemu``)."""
    name = str(settings.engine)
    if name == "auto":
        name = auto_engine_name(settings)
    return engine_by_name(name)
