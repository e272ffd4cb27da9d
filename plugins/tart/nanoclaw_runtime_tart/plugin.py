"""The ``tart`` runtime's hooks: every execution in a one-time macOS VM, deleted when it ends.

A run sweeps what killed runs left, then takes a spare VM made for it
(``TART_SPARE``) or clones the base (``TART_BASE_IMAGE``) to a fresh, never-used
name, sizes it, boots it headless with the contract's mounts shared, waits for the
Tart Guest Agent, and runs the agent through ``tart exec -i``: the environment
block and the ContainerInput go on its stdin, never on a command line. The VM is
stopped and deleted on every exit path; one whose owner was killed is swept by the
next run, ``stats`` or ``reset``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc

from . import owners, spare
from .guest import env_block, guest_env, launch_command
from .settings import GUEST_SHARES, TartSettings
from .shares import AGENT_SHARE, make_copies, plan_shares
from .shares import guest_env as share_env
from .sweep import ours, sweep
from .tartcli import Tart, TartError, VMInfo, tart_home, tool_env
from .vm import VMError, VMSpec, ephemeral_vm, fresh_name

RUNTIME = "tart"
INSTALL_FIX = "brew install cirruslabs/cli/tart"
GB_IN_MB = 1000.0 * 1000 * 1000 / 2**20  # tart reports decimal GB
EXTRA_PATH = ("/opt/homebrew/bin", "/usr/local/bin")


def _on_apple_silicon_mac() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _host() -> str:
    return f"{platform.system()} {platform.machine()}"


def _which(executable: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_PATH])
    return shutil.which(executable, path=path)


def _tart(settings: TartSettings) -> Tart:
    """The tart wrapper, or :class:`nc.EngineUnavailable` saying how to get tart."""
    path = _which(settings.executable)
    if path is None:
        if _on_apple_silicon_mac():
            raise nc.EngineUnavailable(
                f"tart not found (TART_EXECUTABLE={settings.executable!r}); install it: "
                f"{INSTALL_FIX}"
            )
        raise nc.EngineUnavailable(
            f"tart runs only on macOS on Apple silicon and this host is {_host()}; choose "
            "another runtime for this group (containerConfig.runtime: container or vibe)"
        )
    return Tart(path, tool_env(settings.tart_home))


def _refuse_root() -> None:
    if sys.platform == "darwin" and os.geteuid() == 0:
        raise nc.UserError(
            "the tart runtime does not run as root: a macOS guest writes to its shared folders "
            "as the user running tart, so the group's files would become root's; run "
            "nanoclaw-runtimes as your own user"
        )


class _Context:
    """What every hook needs: tart, the records of our VMs, the VM slots."""

    def __init__(self, settings: TartSettings) -> None:
        self.settings = settings
        self.tart = _tart(settings)
        self.state = owners.state_root(settings.state_dir)
        self.home = tart_home(settings.tart_home)
        self.records = owners.Records(self.state, self.home)

    @property
    def pool(self) -> Any:
        from nanoclaw_runtimes_core.locks import SlotPool

        return SlotPool(self.state / "slots", self.settings.max_running, name="vm")

    def sweep(self, notify: Any, vms: list[VMInfo] | None = None) -> list[str]:
        removed, problems = sweep(
            self.tart, self.records, stop_timeout_s=self.settings.stop_timeout, vms=vms
        )
        for line in problems:
            notify(line)
        return removed

    def evict(self, **kwargs: Any) -> list[str]:
        return spare.evict(
            self.tart, self.records, stop_timeout_s=self.settings.stop_timeout, **kwargs
        )


def _agent_dir(state: Path) -> Path:
    """A read-only folder holding only the example agent (shared when no agentCommand is set)."""
    source = nc.example_agent_file()
    data = source.read_bytes()
    folder = state / f"agent-{hashlib.sha256(data).hexdigest()[:12]}"
    target = folder / "example_agent.py"
    if not target.is_file():
        folder.mkdir(mode=0o700, exist_ok=True)
        tmp = folder / f".example_agent.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        os.replace(tmp, target)
    return folder


# --------------------------------------------------------------------------- hooks


@nc.hookimpl
def runtime_settings() -> type:
    """The settings class: TART_* variables and the group keys tartImage, cpus, ram, spare."""
    return TartSettings


@nc.hookimpl
def engine_status(settings: TartSettings) -> nc.EngineStatus:
    """Whether ``tart`` is there and answers ``--version`` (the real one needs macOS on Apple
    silicon). A macOS guest sees only its shares and its own disk and processes; tart shares
    whole folders, so masks cannot be applied (the core refuses a config changed through
    one), and the guest has a network."""
    isolation = frozenset({nc.ISOLATION_FILESYSTEM, nc.ISOLATION_PID})
    path = _which(settings.executable)
    if path is None:
        if _on_apple_silicon_mac():
            return nc.EngineStatus(
                available=False,
                engine=RUNTIME,
                detail=f"{settings.executable!r} not found on PATH",
                fix=INSTALL_FIX,
                isolation=isolation,
            )
        return nc.EngineStatus(
            available=False,
            engine=RUNTIME,
            detail=f"tart runs only on macOS on Apple silicon; this host is {_host()}",
            fix='set "runtime" to "container" or "vibe" in the group\'s containerConfig '
            "(both run on Linux), or run this group on a Mac",
            isolation=isolation,
        )
    try:
        version = Tart(path, tool_env(settings.tart_home)).version()
    except (TartError, OSError, subprocess.TimeoutExpired) as exc:
        return nc.EngineStatus(
            available=False,
            engine=RUNTIME,
            detail=f"`{path} --version` failed: {exc}",
            fix=INSTALL_FIX,
            isolation=isolation,
        )
    detail = path
    if not _on_apple_silicon_mac():
        detail += f" (this host is {_host()}, where the real tart cannot run)"
    return nc.EngineStatus(
        available=True, engine=RUNTIME, version=version, detail=detail, isolation=isolation
    )


@nc.hookimpl
def prepare(request: nc.PrepareRequest[TartSettings]) -> str | None:
    """A group needs nothing (its folders are shared at run time). ``prepare --base tart``
    fetches the base (an OCI image is pulled) and proves that a VM cloned from it boots and
    its guest agent answers, then deletes that VM."""
    if request.group is not None:
        return None
    _refuse_root()
    ctx = _Context(request.settings)
    settings = ctx.settings

    def progress(message: str) -> None:
        request.progress(message, None)

    vms = ctx.tart.local_vms()
    for line in ctx.sweep(progress, vms):
        progress(line)
    if settings.base_image not in ctx.tart.images():
        progress(
            f"fetching {settings.base_image} (an OCI image is pulled first: this can take long)"
        )
    spec = VMSpec(
        base_image=settings.base_image,
        cpus=settings.cpus,
        ram_mb=settings.ram,
        dir_args=(),
        workdir="/",
        boot_timeout_s=settings.boot_timeout / 1000,
        stop_timeout_s=settings.stop_timeout,
    )
    name = fresh_name(f"check-{os.urandom(4).hex()}", {v.name for v in vms}, ctx.records)
    started = time.monotonic()
    try:
        with ephemeral_vm(
            ctx.tart,
            spec,
            ctx.records,
            name,
            group="",
            project=str(request.project.root),
            pool=ctx.pool,
            notify=progress,
            evict=lambda: bool(ctx.evict()),
            wait_s=settings.boot_timeout / 1000,
        ):
            took = time.monotonic() - started
            code, _ = ctx.tart.probe(
                name, "/bin/sh", "-c", 'command -v "$1" >/dev/null', "sh", settings.guest_python
            )
    except VMError as exc:
        raise nc.UserError(
            f"the tart base {settings.base_image!r} (TART_BASE_IMAGE) is not usable: {exc}"
        ) from None
    summary = f"base {settings.base_image} ready: a VM from it answered in {took:.1f} s"
    if code != 0:
        summary += (
            f"; note: {settings.guest_python!r} (TART_GUEST_PYTHON) is not in the guest, so "
            "groups need an agentCommand installed in the image"
        )
    return summary


@nc.hookimpl
def execute(request: nc.ExecuteRequest[TartSettings]) -> nc.ExecutionResult:
    """Run the agent (or the command) in a one-time VM: a claimed spare or a fresh clone."""
    _refuse_root()
    ctx = _Context(request.settings)
    settings = ctx.settings
    notify = request.sink.on_problem
    started = time.monotonic()
    vms = ctx.tart.local_vms()
    for line in ctx.sweep(notify, vms):
        notify(line)
    agent_dir = (
        _agent_dir(ctx.state) if request.input is not None and not request.agent_command else None
    )
    run_folder = nc.runs_dir() / request.run_name if request.run_name else None
    plan = plan_shares(request.mounts, agent_dir=agent_dir, run_folder=run_folder)
    make_copies(plan)
    hidden = sorted(m.container_path for m in request.masks if m.source is None)
    if hidden:
        notify(
            "tart shares whole folders and cannot hide "
            + ", ".join(hidden)
            + " from this group's agent; use the container or vibe runtime to hide them"
        )
    spec = VMSpec(
        base_image=settings.base_image,
        cpus=settings.cpus,
        ram_mb=settings.ram,
        dir_args=plan.dir_args(),
        workdir=plan.workdir,
        boot_timeout_s=settings.boot_timeout / 1000,
        stop_timeout_s=settings.stop_timeout,
    )
    if request.input is not None:
        command = (
            list(request.agent_command)
            if request.agent_command
            else [settings.guest_python, f"{GUEST_SHARES}/{AGENT_SHARE}/example_agent.py"]
        )
        payload = request.input_json()
    else:
        command, payload = list(request.command or ()), b""
    env = guest_env(
        home=settings.guest_home,
        path=settings.guest_path,
        configured=request.env,
        shares=share_env(plan),
    )
    stdin = env_block(env) + payload
    key = spare.spare_key(ctx.tart, spec, str(ctx.home))
    wait_s = request.timeout_ms / 1000
    try:
        with _vm(ctx, request, spec, key, vms, wait_s) as name:
            argv = ctx.tart.argv("exec", "-i", name, *launch_command(plan.workdir, command))
            result = nc.run_process(
                argv,
                timeout_ms=request.timeout_ms,
                sink=request.sink,
                agent_mode=request.input is not None,
                stdin=stdin,
                env=ctx.tart.env,
                stop=lambda: _hard_stop(ctx.tart, name),
                grace_s=settings.stop_timeout + 5.0,
            )
    except VMError as exc:
        return nc.ExecutionResult(
            exit_code=None,
            error=f"tart: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
            timeout_ms=request.timeout_ms,
        )
    finally:
        if settings.spare:
            _spawn_spare(ctx, request, spec, key)
    if result.exit_code == 255:
        result = result.replace(
            error="the program in the VM was killed by a signal (tart exec exit status 255; a "
            "program that exits with 255 itself looks the same)"
            + (f": {result.stderr_tail[-200:]}" if result.stderr_tail else ""),
        )
    return result


def _hard_stop(tart: Tart, name: str) -> None:
    """On timeout or interruption: stop the VM, which ends the guest command and ``tart exec``."""
    try:
        tart.stop(name, timeout_s=5)
    except TartError as exc:
        if not exc.missing_or_stopped:
            raise


def _vm(
    ctx: _Context,
    request: nc.ExecuteRequest[TartSettings],
    spec: VMSpec,
    key: str,
    vms: list[VMInfo],
    wait_s: float,
) -> Any:
    """The run's VM: a spare made for exactly this run (when spares are on), else a fresh one."""
    notify = request.sink.on_problem
    group = request.group.folder
    for line in ctx.evict(which=lambda r: r.group == group and r.data.get("key") != key):
        notify(line + ": the group's mounts or settings changed")
    if ctx.settings.spare:
        taken = spare.take(ctx.records, key, wait_s=spec.boot_timeout_s, notify=notify)
        if taken is not None:
            name, fd = taken
            code, _ = ctx.tart.probe(name, "/bin/test", "-d", spec.workdir, timeout=10.0)
            if code == 0:
                return spare.claimed_vm(
                    ctx.tart,
                    ctx.records,
                    name,
                    fd,
                    pool=ctx.pool,
                    stop_timeout_s=ctx.settings.stop_timeout,
                    notify=notify,
                    wait_s=wait_s,
                )
            notify(f"the spare VM {name} does not answer; deleting it and booting a fresh VM")
            with _closing_claim(ctx, name, fd):
                pass
    stem = request.run_name or f"run-{os.urandom(6).hex()}"
    name = fresh_name(stem, {v.name for v in vms}, ctx.records)
    return ephemeral_vm(
        ctx.tart,
        spec,
        ctx.records,
        name,
        group=group,
        project=str(request.project.root),
        pool=ctx.pool,
        notify=notify,
        evict=lambda: _report(ctx.evict(), notify),
        wait_s=wait_s,
    )


def _report(lines: list[str], notify: Any) -> bool:
    for line in lines:
        notify(line + " to make room for this run")
    return bool(lines)


def _closing_claim(ctx: _Context, name: str, fd: int) -> Any:
    from .vm import remove_vm

    class _Done:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            try:
                remove_vm(ctx.tart, name, stop_timeout_s=ctx.settings.stop_timeout)
                owners.remove_files(ctx.records.folder, name)
            except (TartError, OSError, subprocess.TimeoutExpired):
                pass
            finally:
                owners.release_fd(fd)

    return _Done()


def _spawn_spare(
    ctx: _Context, request: nc.ExecuteRequest[TartSettings], spec: VMSpec, key: str
) -> None:
    """Boot the next spare for this group, unless one is there already."""
    if any(r.data.get("key") == key for r in spare.live_spares(ctx.records)):
        return
    if any(m.is_file for m in request.mounts):
        return  # single-file mounts are copied per run: no spare can match
    spare.spawn_reaper(
        {
            "state": str(ctx.state),
            "executable": ctx.tart.executable,
            "env": ctx.tart.env,
            "tartHome": str(ctx.home),
            "maxRunning": ctx.settings.max_running,
            "group": request.group.folder,
            "project": str(request.project.root),
            "key": key,
            "idleS": ctx.settings.spare_idle / 1000,
            "spec": {
                "base_image": spec.base_image,
                "cpus": spec.cpus,
                "ram_mb": spec.ram_mb,
                "dir_args": list(spec.dir_args),
                "workdir": spec.workdir,
                "boot_timeout_s": spec.boot_timeout_s,
                "stop_timeout_s": spec.stop_timeout_s,
            },
        },
        ctx.tart.env,
        ctx.state,
    )


@nc.hookimpl
def reset(request: nc.GroupRequest[TartSettings]) -> list[str]:
    """Delete the group's spare VM and every leftover of killed runs; a group keeps nothing
    else (its folders are the user's). Scope ``warm`` deletes only the spare."""
    try:
        ctx = _Context(request.settings)
    except nc.EngineUnavailable:
        return []
    group = request.group.folder
    removed = ctx.evict(which=lambda r: r.group == group)
    if request.scope == "all":
        removed += ctx.sweep(lambda line: removed.append(line))
    return removed


@nc.hookimpl
def stats(request: nc.StatsRequest[TartSettings]) -> list[nc.StatsRow]:
    """The base image, the VMs of runs in progress, the spare VM, and leftovers of killed runs
    (swept first, so what remains is what could not be removed)."""
    try:
        ctx = _Context(request.settings)
        vms = ctx.tart.local_vms()
    except (nc.EngineUnavailable, nc.UserError, TartError, OSError, subprocess.TimeoutExpired):
        return []
    problems: list[str] = []
    ctx.sweep(problems.append, vms)
    vms = ctx.tart.local_vms()
    settings = ctx.settings
    rows = [
        _row(vm, None, "base", "the base every run is cloned from")
        for vm in vms
        if vm.name == settings.base_image
    ]
    if not rows:
        rows.append(
            nc.StatsRow(
                runtime=RUNTIME,
                group=None,
                kind="base",
                path=settings.base_image,
                note="a local VM or an OCI image (not measured here): "
                "`nanoclaw-runtimes prepare --base tart` fetches it",
            )
        )
    spares = {r.path: r for r in spare.spare_rows(ctx.records, RUNTIME)}
    by_name = {vm.name: vm for vm in vms}
    for found in ours(ctx.tart, ctx.records, vms):
        record, vm = found.record, found.vm
        if record.name in spares:
            row = spares[record.name]
            if vm is not None:
                row = row.replace(
                    apparent_mb=vm.disk_gb * GB_IN_MB, allocated_mb=vm.size_gb * GB_IN_MB
                )
            rows.append(row)
        elif vm is None:
            continue
        elif found.alive:
            rows.append(
                _row(by_name[record.name], record.group or None, "vm", f"{vm.state}; in use")
            )
        else:
            rows.append(
                _row(
                    vm,
                    record.group or None,
                    "leftover-vm",
                    f"{vm.state}; its owner was killed and it could not be removed yet"
                    + (f" ({problems[0]})" if problems else ""),
                )
            )
    return rows


def _row(vm: VMInfo, group: str | None, kind: str, note: str) -> nc.StatsRow:
    return nc.StatsRow(
        runtime=RUNTIME,
        group=group,
        kind=kind,
        path=vm.name,
        apparent_mb=vm.disk_gb * GB_IN_MB,
        allocated_mb=vm.size_gb * GB_IN_MB,
        note=note,
    )
