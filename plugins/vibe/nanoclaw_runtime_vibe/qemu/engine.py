"""The QEMU engine of the vibe runtime: a group's disk booted on Linux, kept warm between runs.

A run goes to the group's warm VM when one is booted with the same boot key and answers
within :data:`WARM_ANSWER_S`; otherwise the old VM (if any) is powered off or killed,
saying why, and a fresh one boots (:mod:`.launch`). The run itself is
:func:`.runner.execute`. After the run the VM stays booted for ``keepWarm`` ms, then the
guest powers itself off, whatever became of the host process that started it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import nanoclaw_runtimes_core as nc

from ..engines import BaseBuild, RunSpec, WarmVm
from . import accel, confine, kernel, launch, runner, virtiofs, vmstate
from .channel import Channel, ChannelClosed, open_folder, socket_path

if TYPE_CHECKING:
    from ..settings import VibeSettings

WARM_ANSWER_S = 5.0
"""How long a warm VM may take to answer before it is taken for hung and replaced."""
BOOT_TIMEOUT_TCG_S = 30
BOOT_TIMEOUT_KVM_S = 10
POWER_OFF_S = 15.0
MAX_FILE = 8 * 2**20
"""Largest file (a read-only file mount or a mask's content) sent to the guest per run."""
ISOLATION = frozenset(
    {nc.ISOLATION_FILESYSTEM, nc.ISOLATION_PID, nc.ISOLATION_NETWORK, nc.ISOLATION_MASKS}
)


class _Vm(nc.Record, kw_only=False):
    folder: Path
    folder_fd: int
    channel: Channel
    console: launch.Console | None


def find_qemu(settings: VibeSettings) -> str | None:
    """The QEMU executable named by ``VIBE_QEMU`` (a path or a name on PATH), or None."""
    name = str(settings.qemu_binary or "qemu-system-x86_64")
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def qemu_version(qemu: str) -> str | None:
    """QEMU's version (``qemu --version``, bounded), or None."""
    lines = nc.run_tool([qemu, "--version"], timeout_s=10).stdout.splitlines()
    return (lines[0].replace("QEMU emulator version ", "").strip() or None) if lines else None


def _hostname(group: str) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", group.lower()).strip("-")[:63]
    return name or "nanoclaw"


def _read_file(path: Path, what: str) -> bytes:
    """A host file to show in the guest, read without following a link, size-capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise nc.UserError(f"cannot read {path} ({what}): {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_size > MAX_FILE:
            raise nc.UserError(
                f"{path} ({what}) is {st.st_size / 2**20:.0f} MB; the QEMU engine shares single "
                f"files up to {MAX_FILE // 2**20} MB: share its folder instead"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_FILE + 1)
    finally:
        os.close(fd)


def build_request(spec: RunSpec) -> runner.Request:
    """The run request the guest gets over its control channel."""
    agent_mode = spec.input is not None
    argv = tuple(spec.command) if spec.command is not None else tuple(spec.agent)
    if not argv:
        raise nc.UserError("the command to run in the guest is empty")
    shares = launch.shares_of(spec.mounts)
    files: list[tuple[str, bytes]] = []
    shown = {m.container_path for m in spec.mounts}
    for mount in spec.mounts:
        if not mount.is_file:
            continue
        if not mount.readonly:
            raise nc.UserError(
                f"{mount.host_path} is a single file mounted read-write at "
                f"{mount.container_path}; the QEMU engine shares folders (read-write) and "
                "single files read-only only: mount its folder instead"
            )
        files.append((mount.container_path, _read_file(mount.host_path, mount.container_path)))
    if nc.EXAMPLE_AGENT not in shown:
        files.append((nc.EXAMPLE_AGENT, nc.example_agent_file().read_bytes()))
    folders: list[str] = []
    for mask in spec.masks:
        if mask.folder:
            folders.append(mask.container_path)
        elif mask.source is not None:
            files.append((mask.container_path, _read_file(mask.source, mask.reason)))
        else:
            files.append((mask.container_path, b""))
    return runner.Request(
        argv=argv,
        env=tuple(spec.env.items()),
        stdin=spec.input or b"",
        workdir=nc.WORKDIR,
        hostname=_hostname(spec.group.folder),
        not_found=runner.not_found_message(argv, agent_mode),
        shares=tuple((s.tag, s.guest, s.readonly) for s in shares),
        files=tuple(files),
        folders=tuple(folders),
        keep_warm_ms=spec.keep_warm_ms,
        agent_mode=agent_mode,
        timeout_ms=spec.timeout_ms,
    )


class QemuEngine:
    """Boots group disks with QEMU (``microvm``, KVM when it works, else TCG), warm."""

    name = "qemu"

    # ------------------------------------------------------------------ status

    def status(self, settings: VibeSettings) -> nc.EngineStatus:
        """QEMU, the guest kernel, virtiofsd, the accelerator, and whether warm VMs work here;
        starts no VM (the KVM verdict is the cached one of an earlier test boot)."""
        qemu = find_qemu(settings)
        if qemu is None:
            return nc.EngineStatus(
                available=False,
                engine=self.name,
                detail=f"{settings.qemu_binary} not found",
                fix="apt-get install qemu-system-x86 (or set VIBE_QEMU to the QEMU binary)",
            )
        version = qemu_version(qemu)
        try:
            source, kversion = kernel.find_host_kernel()
            kernel.find_busybox()
            kernel.find_cc()
        except nc.EngineUnavailable as exc:
            return nc.EngineStatus(
                available=False, engine=self.name, version=version, detail=str(exc), fix=str(exc)
            )
        daemon = virtiofs.find_virtiofsd(settings.qemu_virtiofsd)
        missing = virtiofs.missing_tools()
        if daemon is None or missing:
            what = (
                f"{settings.qemu_virtiofsd or virtiofs.C_VIRTIOFSD} not found"
                if daemon is None
                else f"{', '.join(missing)} not found"
            )
            return nc.EngineStatus(
                available=False,
                engine=self.name,
                version=version,
                detail=what,
                fix="apt-get install qemu-system-x86 util-linux (virtiofsd ships with QEMU 7.2)",
            )
        try:
            warm = (
                f"yes: a VM stays booted keepWarm ms after a run, its state in {vmstate.vms_dir()}"
            )
        except (OSError, nc.UserError) as exc:
            warm = f"no: {exc}"
        identity = (
            "guest root is the invoking user on host files"
            if os.geteuid() != 0
            else "guest uids 0-65535 are the sandbox user's range on host files"
        )
        confinement = confine.describe(confine.probe(qemu))
        return nc.EngineStatus(
            available=True,
            engine=self.name,
            version=version,
            detail=(
                f"{qemu}; guest kernel {kversion} ({source}); virtiofsd {daemon} in a user "
                f"namespace ({identity}); QEMU: {confinement}; "
                f"acceleration: {accel.describe(settings.qemu_accel)}; "
                f"warm runs: {warm}"
            ),
            isolation=ISOLATION,
        )

    # ------------------------------------------------------------------ run

    def run(
        self, spec: RunSpec, *, settings: VibeSettings, sink: nc.OutputSink
    ) -> nc.ExecutionResult:
        """Run in the group's warm VM, or a freshly booted one (see the module docstring)."""
        request = build_request(spec)
        folder = vmstate.folder_of(spec.project, spec.group.folder)
        for attempt in range(2):
            vm = self._warm(folder, spec, sink) or self._cold(folder, spec, settings, sink)
            try:
                result = runner.execute(
                    vm.channel, request, sink, alive=lambda: vmstate.alive(folder)
                )
            except runner.VmLost as exc:
                self._close(vm)
                vmstate.kill(folder)
                if not exc.started and attempt == 0:
                    sink.on_problem(
                        f"the group's VM went away before the run started ({exc}); "
                        "booting a fresh one"
                    )
                    continue
                return nc.ExecutionResult(
                    exit_code=None,
                    error=f"the group's VM failed during the run: {exc}; it was killed (the "
                    "next run boots a fresh one)",
                    timeout_ms=spec.timeout_ms,
                )
            except BaseException:
                self._after(vm, spec)
                raise
            self._after(vm, spec)
            return result
        raise AssertionError("unreachable")

    def _after(self, vm: _Vm, spec: RunSpec) -> None:
        """Keep the VM warm (and say until when), or power it off with keepWarm 0."""
        if spec.keep_warm_ms == 0:
            with contextlib.suppress(ChannelClosed):
                vm.channel.send(["Q"])
            self._close(vm)
            if not vmstate.wait_gone(vm.folder, POWER_OFF_S):
                vmstate.kill(vm.folder)
            vmstate.remove(vm.folder)
            return
        with contextlib.suppress(OSError):
            vmstate.write_json(
                vm.folder / vmstate.IDLE, {"idleUntil": time.time() + spec.keep_warm_ms / 1000}
            )
        self._close(vm)

    @staticmethod
    def _close(vm: _Vm) -> None:
        vm.channel.close()
        if vm.console is not None:
            vm.console.close()
        with contextlib.suppress(OSError):
            os.close(vm.folder_fd)

    def _warm(self, folder: Path, spec: RunSpec, sink: nc.OutputSink) -> _Vm | None:
        """The group's warm VM, connected, or None (after replacing one that does not fit)."""
        group = spec.group.folder
        if not folder.exists():
            return None
        if not vmstate.alive(folder):
            sink.on_problem(
                f"the warm VM of group {group!r} was gone ({vmstate.describe_end(folder)}); "
                "booting a fresh one"
            )
            vmstate.remove(folder)
            return None
        meta = vmstate.read_json(folder / vmstate.META)
        if meta.get("bootKey") != spec.boot_key:
            sink.on_problem(
                f"the warm VM of group {group!r} was booted with other settings (its disk, "
                "base, mounts, masks, cpus, ram, network or engine settings changed); "
                "powering it off and booting a fresh one"
            )
            self._power_off(folder)
            return None
        try:
            fd = open_folder(folder)
        except OSError:
            return None
        channel: Channel | None = None
        try:
            channel = Channel(fd, connect_timeout=WARM_ANSWER_S)
            channel.handshake(WARM_ANSWER_S, alive=lambda: vmstate.alive(folder))
        except (OSError, TimeoutError, ChannelClosed):
            if channel is not None:
                channel.close()
            os.close(fd)
            if vmstate.wait_gone(folder, 5.0):
                if folder.exists():  # it died just now: its watcher was still cleaning up
                    sink.on_problem(
                        f"the warm VM of group {group!r} was gone "
                        f"({vmstate.describe_end(folder)}); booting a fresh one"
                    )
                    vmstate.remove(folder)
                return None  # (or it reached its idle end just now and powered off)
            sink.on_problem(
                f"the warm VM of group {group!r} did not answer within {WARM_ANSWER_S:.0f} s; "
                "killing it and booting a fresh one"
            )
            vmstate.kill(folder)
            return None
        console = None
        if spec.debug:  # the guest's own messages of this run, on this process's stderr
            with contextlib.suppress(OSError):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                sock.settimeout(1.0)
                sock.connect(socket_path(fd, launch.CONSOLE))
                sock.settimeout(None)
                console = launch.Console(sock, True)
        return _Vm(folder=folder, folder_fd=fd, channel=channel, console=console)

    def _cold(
        self, folder: Path, spec: RunSpec, settings: VibeSettings, sink: nc.OutputSink
    ) -> _Vm:
        """Boot a fresh VM for the group; a boot that hangs is killed and tried once more."""
        from .. import images

        qemu = find_qemu(settings)
        if qemu is None:
            raise nc.EngineUnavailable(
                "QEMU not found: install it with `apt-get install qemu-system-x86`, or set "
                "VIBE_QEMU to the qemu-system-x86_64 binary"
            )
        daemon = virtiofs.find_virtiofsd(settings.qemu_virtiofsd)
        if daemon is None:
            raise nc.EngineUnavailable(
                f"virtiofsd not found ({settings.qemu_virtiofsd or virtiofs.C_VIRTIOFSD}): "
                "install qemu-system-x86 (QEMU 7.2 ships it), or set VIBE_QEMU_VIRTIOFSD"
            )
        if folder.exists():
            vmstate.kill(folder)
        files = kernel.ensure_kernel_dir(spec.base.parent)
        host = accel.host_info(qemu, files, settings.qemu_accel)
        default = BOOT_TIMEOUT_KVM_S if host.accel == "kvm" else BOOT_TIMEOUT_TCG_S
        plan = launch.BootPlan(
            qemu=qemu,
            daemon=daemon,
            files=files,
            host=host,
            disk=spec.disk,
            disk_lock=images.disk_lock_path(spec.disk),
            shares=launch.shares_of(spec.mounts),
            cpus=spec.cpus,
            ram_mb=spec.ram_mb,
            network=spec.network,
            keep_warm_ms=spec.keep_warm_ms,
            user=spec.user,
            group=spec.group.folder,
            boot_key=spec.boot_key,
            boot_timeout_s=float(settings.qemu_boot_timeout or default),
            debug=spec.debug,
        )
        try:
            booted = launch.boot(plan, folder)
        except launch.BootTimedOut as exc:
            sink.on_problem(f"{exc.what}; booting it once more")
            if folder.exists():
                vmstate.kill(folder)
            booted = launch.boot(plan, folder)
        return _Vm(
            folder=folder,
            folder_fd=booted.folder_fd,
            channel=booted.channel,
            console=booted.console if spec.debug else None,
        )

    # ------------------------------------------------------------------ warm VMs

    def _power_off(self, folder: Path) -> None:
        """Power a VM off cleanly (bounded), else kill it; its folder is gone after."""
        try:
            fd = open_folder(folder)
        except OSError:
            vmstate.kill(folder)
            return
        try:
            channel = Channel(fd, connect_timeout=3.0)
            try:
                channel.handshake(3.0, alive=lambda: vmstate.alive(folder))
                channel.send(["Q"])
            finally:
                channel.close()
        except (OSError, TimeoutError, ChannelClosed):
            pass
        finally:
            os.close(fd)
        if not vmstate.wait_gone(folder, POWER_OFF_S):
            vmstate.kill(folder)
        vmstate.remove(folder)

    def stop_warm(self, project: nc.Project, group: str, settings: VibeSettings) -> list[str]:
        """Power off the group's warm VM (the caller holds the group lock)."""
        folder = vmstate.folder_of(project, group)
        if not folder.exists():
            return []
        if not vmstate.alive(folder):
            vmstate.remove(folder)
            return []
        pid = vmstate.qemu_pid(folder)
        self._power_off(folder)
        return [f"powered off the warm VM of group {group!r} (QEMU pid {pid})"]

    def warm_vms(self, project: nc.Project, settings: VibeSettings) -> list[WarmVm]:
        """The project's booted VMs: group, QEMU's pid, start, idle end, QEMU's resident MB."""
        prefix = f"{vmstate.project_tag(project)}-"
        found: list[WarmVm] = []
        with contextlib.suppress(OSError), os.scandir(vmstate.vms_dir()) as entries:
            for entry in entries:
                if not entry.name.startswith(prefix):
                    continue
                folder = Path(entry.path)
                if not vmstate.alive(folder):
                    continue
                meta = vmstate.read_json(folder / vmstate.META)
                idle = vmstate.read_json(folder / vmstate.IDLE)
                pid = vmstate.qemu_pid(folder)
                started = float(meta.get("started") or 0.0)
                found.append(
                    WarmVm(
                        group=entry.name[len(prefix) :],
                        engine=self.name,
                        pid=pid or int(meta.get("pid") or 0),
                        started=started,
                        idle_until=float(idle.get("idleUntil") or started),
                        memory_mb=vmstate.rss_mb(pid),
                        folder=folder,
                    )
                )
        return sorted(found, key=lambda vm: vm.group)

    # ------------------------------------------------------------------ base

    def build_base(self, build: BaseBuild, *, settings: VibeSettings) -> str:
        """Build a base image (``minimal``: busybox, seconds; else Debian) with its default
        agent, and the kernel files beside it."""
        from .base_builder import build_base

        return build_base(build, settings=settings)
