"""The ``tart`` runtime: every execution in a fresh macOS VM, deleted when it ends.

Each run clones the base VM (``TART_BASE_IMAGE``) to a VM named
``nanoclaw-<group>-<run>-pid<host pid>``, sets its CPUs and memory, boots it
headless with the contract's mounts shared, waits for the Tart Guest Agent,
runs the agent through ``tart exec -i`` with the ContainerInput on stdin, and
stops and deletes the VM on every exit path. Leftovers of crashed runs are
swept at the start of each run and by ``reset``.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from typing import Any

from nanoclaw_runtimes_core import hookimpl
from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import (
    EngineStatus,
    ExecuteRequest,
    ExecutionResult,
    GroupRequest,
    PrepareRequest,
    StatsRequest,
    StatsRow,
)
from nanoclaw_runtimes_core.process import run_streaming

from .lifecycle import GUEST_LAUNCHER, VMError, ephemeral_vm
from .settings import TartSettings
from .shares import Share, guest_env, plan_shares, workdir
from .slots import slot_pool
from .sweep import sweep
from .tartcli import Tart, TartError, VMInfo
from .vm import CHECK_GROUP, is_leftover, make_name, parse_name

ENGINE = "tart"
INSTALL_FIX = "brew install cirruslabs/cli/tart"
GB_IN_MB = 1024.0


def _on_apple_silicon_mac() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _host() -> str:
    return f"{platform.system()} {platform.machine()}"


def _tart(settings: TartSettings) -> Tart:
    """The tart wrapper, or :class:`EngineUnavailable` saying how to get tart."""
    path = shutil.which(settings.executable)
    if path is None:
        if _on_apple_silicon_mac():
            raise EngineUnavailable(
                f"tart not found (TART_EXECUTABLE={settings.executable!r}); install it: "
                f"{INSTALL_FIX}"
            )
        raise EngineUnavailable(
            f"tart runs only on macOS on Apple silicon and this host is {_host()}; "
            f"choose another runtime for this group (containerConfig.runtime)"
        )
    return Tart(path)


def _require_exec_access(settings: TartSettings) -> None:
    if settings.access != "exec":
        raise UserError(
            f"TART_ACCESS={settings.access!r} is not implemented: this runtime reaches the "
            f"guest through the Tart Guest Agent only; set TART_ACCESS=exec (the default) and "
            f"use an image with the agent (every non-vanilla Cirrus Labs image has it)"
        )


def guest_command(
    tart: Tart,
    name: str,
    shares: list[Share],
    settings: TartSettings,
    command: tuple[str, ...],
    *,
    interactive: bool,
) -> list[str]:
    """The ``tart exec`` command line running ``command`` in the guest's group workspace.

    Environment variables go through ``/usr/bin/env`` and the command through
    ``"$@"`` of a fixed launcher script, so nothing from the user is parsed by a
    shell. The ContainerInput (with its secrets) is never part of it: it goes
    to stdin (``-i``).
    """
    env = guest_env(shares, settings.shares_root)
    cwd = workdir(shares, settings.shares_root)
    return [
        *tart.argv("exec", *(["-i"] if interactive else []), name),
        "/usr/bin/env",
        *(f"{key}={value}" for key, value in sorted(env.items())),
        "/bin/sh",
        "-c",
        GUEST_LAUNCHER,
        "nanoclaw-launch",
        cwd,
        *command,
    ]


def _sweep_before_run(tart: Tart, settings: TartSettings, notify: Any) -> list[VMInfo]:
    vms = tart.list()
    removed, problems = sweep(tart, stop_timeout_s=_stop_s(settings), vms=vms)
    for line in problems:
        notify(line)
    if removed:
        notify("removed " + "; ".join(removed))
    return vms


def _stop_s(settings: TartSettings) -> int:
    return max(1, -(-settings.stop_timeout_ms // 1000))


def _base_known(vms: list[VMInfo], base: str) -> bool:
    return any(vm.name == base for vm in vms)


# --------------------------------------------------------------------------- hooks


@hookimpl
def runtime_settings() -> type:
    """The tart runtime's settings: :class:`~nanoclaw_runtime_tart.settings.TartSettings`."""
    return TartSettings


@hookimpl
def engine_status(settings: Any) -> EngineStatus:
    """Whether ``tart`` is on PATH and answers ``--version`` (it needs macOS on Apple silicon)."""
    executable = getattr(settings, "executable", None) or "tart"
    path = shutil.which(executable)
    if path is None:
        if _on_apple_silicon_mac():
            return EngineStatus(
                available=False,
                engine=ENGINE,
                detail=f"{executable!r} not found on PATH",
                fix=INSTALL_FIX,
            )
        return EngineStatus(
            available=False,
            engine=ENGINE,
            detail=f"tart runs only on macOS on Apple silicon; this host is {_host()}",
            fix='set "runtime" to "container" or "vibe" in the group\'s containerConfig '
            "(both run on Linux: bubblewrap and QEMU), or run this group on a Mac",
        )
    try:
        version = Tart(path).version(timeout=3.0)
    except (TartError, OSError, subprocess.TimeoutExpired) as exc:
        return EngineStatus(
            available=False,
            engine=ENGINE,
            detail=f"`{path} --version` failed: {exc}",
            fix=INSTALL_FIX,
        )
    detail = path
    if not _on_apple_silicon_mac():
        detail += f" (this host is {_host()}, where the real tart cannot run)"
    return EngineStatus(available=True, engine=ENGINE, version=version, detail=detail)


@hookimpl
def prepare(request: PrepareRequest) -> str | None:
    """``prepare --base tart``: pull or clone the base and prove its guest agent answers.

    Boots a throwaway VM from the base, runs ``true`` through ``tart exec``,
    looks for the agent command, then stops and deletes the VM. A group needs
    no preparation of its own (its workspace is shared at run time).
    """
    if request.group is not None:
        return None
    settings: TartSettings = request.settings
    _require_exec_access(settings)
    tart = _tart(settings)

    def progress(message: str) -> None:
        request.progress(message, None)

    vms = _sweep_before_run(tart, settings, progress)
    if not _base_known(vms, settings.base_image):
        progress(
            f"fetching {settings.base_image} (an OCI image is pulled first: this can take "
            f"a long time)"
        )
    vm = make_name(CHECK_GROUP)
    started = time.monotonic()
    try:
        with ephemeral_vm(
            tart,
            settings,
            vm,
            [],
            pool=slot_pool(request.project, settings),
            notify=progress,
            limit_wait_s=settings.boot_timeout_ms / 1000,
        ) as name:
            booted = time.monotonic() - started
            progress(f"guest agent of {name} answered after {booted:.1f} s")
            program = settings.agent_command[0]
            found = (
                tart.exec_probe(name, "/bin/sh", "-c", 'command -v "$1" >/dev/null', "sh", program)
                == 0
            )
    except VMError as exc:
        raise UserError(
            f"the tart base {settings.base_image!r} (TART_BASE_IMAGE) is not usable: {exc}"
        ) from None
    summary = f"base {settings.base_image} ready: guest agent answered in {booted:.1f} s"
    if not found:
        summary += (
            f"; warning: the agent command {program!r} (TART_AGENT_COMMAND) was not "
            f"found in the guest, install it in the base image"
        )
    return summary


@hookimpl
def execute(request: ExecuteRequest) -> ExecutionResult:
    """Run one execution in a fresh VM cloned from the base, then stop and delete it.

    The VM waits for one of ``TART_MAX_RUNNING`` machine-wide slots; the agent
    gets the ContainerInput on stdin through ``tart exec -i`` (command mode
    runs ``request.command`` instead), in the group workspace's shared folder.
    A VM that cannot be made ready gives a result with ``error`` set.
    """
    settings: TartSettings = request.settings
    _require_exec_access(settings)
    tart = _tart(settings)
    notify = request.sink.on_problem
    shares = plan_shares(request.mounts, settings.shares_root)
    vms = _sweep_before_run(tart, settings, notify)
    if not _base_known(vms, settings.base_image):
        notify(
            f"the base {settings.base_image} is not here yet and is fetched first "
            f"(this can take long; `nanoclaw-runtimes prepare --base tart` does it ahead)"
        )
    if request.input is not None:
        command, stdin, interactive = settings.agent_command, request.input_json(), True
    else:
        command, stdin, interactive = tuple(request.command or ()), None, False
    vm = make_name(request.group.folder, request.run_id)
    started = time.monotonic()
    try:
        with ephemeral_vm(
            tart,
            settings,
            vm,
            shares,
            pool=slot_pool(request.project, settings),
            notify=notify,
            limit_wait_s=request.timeout_ms / 1000,
        ) as name:
            argv = guest_command(tart, name, shares, settings, command, interactive=interactive)
            result = run_streaming(
                argv,
                timeout_ms=request.timeout_ms,
                sink=request.sink,
                stdin=stdin,
                passthrough=not interactive,
                grace_s=5.0,
            )
    except VMError as exc:
        return ExecutionResult(
            exit_code=None,
            error=f"tart: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
            timeout_ms=request.timeout_ms,
        )
    return result.to_result()


@hookimpl
def reset(request: GroupRequest) -> list[str]:
    """Stop and delete this group's leftover VMs of crashed runs (a group keeps no other state)."""
    settings: TartSettings = request.settings
    try:
        tart = _tart(settings)
    except EngineUnavailable:
        return []
    removed, problems = sweep(tart, stop_timeout_s=_stop_s(settings), group=request.group.folder)
    if problems:
        raise UserError("\n".join([*removed, *problems]))
    return removed


@hookimpl
def stats(request: StatsRequest) -> list[StatsRow]:
    """The base image's size, VMs of runs in progress and leftovers of crashed runs."""
    settings: TartSettings = request.settings
    try:
        tart = _tart(settings)
        vms = tart.list()
    except (EngineUnavailable, TartError, OSError, subprocess.TimeoutExpired):
        return []
    rows = [_row(vm, None, "base", vm.source) for vm in vms if vm.name == settings.base_image]
    if not rows:
        rows.append(
            StatsRow(
                runtime=ENGINE,
                group=None,
                kind="base",
                path=settings.base_image,
                note="not fetched yet: nanoclaw-runtimes prepare --base tart",
            )
        )
    for vm in vms:
        parsed = parse_name(vm.name) if vm.source.lower() == "local" else None
        if parsed is None:
            continue
        group = None if parsed.group == CHECK_GROUP else parsed.group
        if is_leftover(parsed):
            rows.append(
                _row(
                    vm,
                    group,
                    "leftover-vm",
                    f"{vm.state}; left by a crashed run, removed by the next run or by reset",
                )
            )
        else:
            rows.append(
                _row(vm, group, "vm", f"{vm.state}; run in progress (host pid {parsed.pid})")
            )
    return rows


def _row(vm: VMInfo, group: str | None, kind: str, note: str) -> StatsRow:
    return StatsRow(
        runtime=ENGINE,
        group=group,
        kind=kind,
        path=vm.name,
        apparent_mb=vm.disk_gb * GB_IN_MB,
        allocated_mb=vm.size_gb * GB_IN_MB,
        note=note,
    )
