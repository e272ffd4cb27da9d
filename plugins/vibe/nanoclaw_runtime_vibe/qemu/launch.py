"""A cold boot: the state folder, the share daemons, the detached watcher and QEMU, and the
wait until the guest program answers.

QEMU boots the ``microvm`` machine (KVM when it works, else TCG) with the host's cloud
kernel and our initramfs; its devices: the group's disk (virtio-blk), one
vhost-user-fs device per share, a virtio-serial device with the four channel ports
(:mod:`.channel`), an ``isa-debug-exit`` port (the guest's clean power-off exits QEMU with
status 33), user-mode NAT only when the group has a network. The serial console carries
only the kernel's and the guest program's own messages.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import nanoclaw_runtimes_core as nc

from . import accel, confine, kernel, virtiofs, vmstate
from .channel import PORTS, Channel, ChannelClosed, open_folder, socket_path
from .virtiofs import Share

CONSOLE = "con.sock"
CONSOLE_TAIL = 4000

# Kernel arguments, each for a measured reason:
#   tsc_early_khz/tsc=reliable  skip TSC calibration, which hangs TCG boots (see tsc.py)
#   mitigations=off             one tenant per VM; page-table isolation is costly under TCG
#   cryptomgr.notests           skips ~0.7 s of crypto self-tests under TCG
#   8250.nr_uarts=1             one serial port to probe, not 32
#   pci=off                     microvm has no PCI bus: skips probing for one
BASE_APPEND = (
    "console=ttyS0",
    "panic=-1",
    "mitigations=off",
    "cryptomgr.notests",
    "8250.nr_uarts=1",
    "pci=off",
)
DRIVE_OPTS = "cache=writeback,discard=unmap"
MAX_SHARES = 20
"""microvm has 24 virtio-mmio slots: disk, serial and network take three."""


class BootFailed(nc.EngineUnavailable):
    """The VM did not boot; the message has the console's tail, ``what`` the reason alone."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what or message


class BootTimedOut(BootFailed):
    """The VM started but did not finish booting in time (rare TCG boot hangs are this)."""


class BootPlan(nc.Record):
    """Everything a cold boot needs."""

    qemu: str
    daemon: str
    files: kernel.KernelFiles
    host: accel.HostInfo
    disk: Path
    disk_lock: Path
    shares: tuple[Share, ...]
    cpus: int
    ram_mb: int
    network: bool
    keep_warm_ms: int
    user: nc.SandboxUser
    group: str
    boot_key: str
    boot_timeout_s: float
    debug: bool


def qemu_path(path: Path | str) -> str:
    """A path inside a QEMU ``key=value,…`` option: commas are doubled."""
    return str(path).replace(",", ",,")


def qemu_argv(plan: BootPlan) -> list[str]:
    """QEMU's command line (run with the VM's folder as working folder)."""
    append = list(BASE_APPEND)
    append.append("nanoclaw.debug" if plan.debug else "quiet")
    append.append(f"nanoclaw.idle={plan.keep_warm_ms}")
    if plan.host.accel == "tcg" and plan.host.tsc_khz:
        append += [f"tsc_early_khz={plan.host.tsc_khz}", "tsc=reliable"]
    if plan.network:
        append.append("nanoclaw.net")
    kvm = plan.host.accel == "kvm"
    ram = plan.ram_mb
    argv = [
        plan.qemu,
        *("-M", "microvm,acpi=on,memory-backend=mem"),
        *("-accel", "kvm" if kvm else "tcg,thread=multi", "-cpu", "host" if kvm else "max"),
        *("-m", f"{ram}M", "-smp", str(plan.cpus)),
        *("-object", f"memory-backend-memfd,id=mem,size={ram}M,share=on"),
        # virtio-mmio defaults to the legacy interface, which vhost-user (virtiofsd) refuses
        *("-global", "virtio-mmio.force-legacy=false"),
        *("-nodefaults", "-no-user-config", "-nographic", "-no-reboot"),
        *("-monitor", "none", "-pidfile", "qemu.pid"),
        *confine.qemu_flags(plan.host.confinement, plan.user),
        *("-kernel", str(plan.files.kernel), "-initrd", str(plan.files.initrd)),
        *("-append", " ".join(append)),
        *("-drive", f"id=disk,file={qemu_path(plan.disk)},format=raw,if=none,{DRIVE_OPTS}"),
        *("-device", "virtio-blk-device,drive=disk"),
        *("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"),
        *("-device", "virtio-serial-device,max_ports=8"),
    ]  # fmt: skip
    for i, (name, sock) in enumerate(PORTS, start=1):
        argv += ["-chardev", f"socket,id=p{i},path={sock},server=on,wait=off"]
        argv += ["-device", f"virtserialport,chardev=p{i},name={name},nr={i}"]
    for share in plan.shares:
        argv += ["-chardev", f"socket,id={share.tag},path=fs/{share.tag}.sock"]
        argv += ["-device", f"vhost-user-fs-device,chardev={share.tag},tag={share.tag}"]
    if plan.network:
        argv += ["-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0"]
    # Last: QEMU waits for the console's reader before it starts the guest (no lost lines).
    argv += [
        "-chardev",
        f"socket,id=con,path={CONSOLE},server=on,wait=on",
        "-serial",
        "chardev:con",
    ]
    return argv


class Console:
    """Reads the serial console in a thread: keeps its tail; with debug, copies it to this
    process's stderr."""

    def __init__(self, sock: socket.socket, debug: bool) -> None:
        self.sock, self.debug = sock, debug
        self.tail = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                self.tail = (self.tail + chunk)[-CONSOLE_TAIL:]
                if self.debug:
                    with contextlib.suppress(OSError, ValueError):
                        sys.stderr.buffer.write(chunk)
                        sys.stderr.buffer.flush()

    def text(self) -> str:
        raw = self.tail.decode("utf-8", errors="replace")
        printable = "".join(c if c.isprintable() or c == "\n" else " " for c in raw)
        return printable.strip()[-1000:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Booted(nc.Record):
    """A VM just booted: its folder, its channel, its console."""

    folder: Path
    folder_fd: int
    channel: Channel
    console: Console
    boot_s: float


def boot(plan: BootPlan, folder: Path) -> Booted:
    """Boot a fresh VM in ``folder`` (which must not exist) and connect to it.

    On any failure everything started is killed and the folder removed; the error says
    what the console showed."""
    if len(plan.shares) > MAX_SHARES:
        raise nc.UserError(
            f"the group has {len(plan.shares)} folders to share; the QEMU engine can share at "
            f"most {MAX_SHARES} (containerConfig.additionalMounts)"
        )
    started = time.monotonic()
    folder.mkdir(mode=0o700)
    owner_fd = disk_fd = -1
    try:
        owner_fd = vmstate.take_owner_lock(folder)
        disk_fd = vmstate.take_disk_lock(plan.disk_lock, plan.disk)
        fs_dir = folder / "fs"
        fs_dir.mkdir(mode=0o700)
        log = folder / "qemu.log"
        daemons = [
            virtiofs.start(
                plan.daemon, share, fs_dir / f"{share.tag}.sock", user=plan.user, log=log
            )
            for share in plan.shares
        ]
        vmstate.write_json(folder / vmstate.META, {"daemons": daemons, "group": plan.group})
        argv = qemu_argv(plan)
        with log.open("ab") as out:
            watcher = subprocess.Popen(
                ["sh", "-c", vmstate.WATCHER, "watch", str(folder), str(len(daemons)),
                 *map(str, daemons), *argv],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=dict(nc.HOST_ENV),
                pass_fds=(owner_fd, disk_fd),
                start_new_session=True,
            )  # fmt: skip
        vmstate.write_json(
            folder / vmstate.META,
            {
                "pid": watcher.pid,
                "daemons": daemons,
                "group": plan.group,
                "bootKey": plan.boot_key,
                "started": time.time(),
                "accel": plan.host.accel,
                "ramMB": plan.ram_mb,
            },
        )
    except BaseException:
        if owner_fd >= 0:
            os.close(owner_fd)
            owner_fd = -1
        vmstate.kill(folder)
        raise
    finally:
        for fd in (owner_fd, disk_fd):
            if fd >= 0:
                os.close(fd)
    return _connect(plan, folder, started)


def _connect(plan: BootPlan, folder: Path, started: float) -> Booted:
    """Connect the console (QEMU then starts the guest) and the channels; wait for the guest
    program's answer."""
    folder_fd = open_folder(folder)
    console: Console | None = None
    channel: Channel | None = None
    deadline = started + plan.boot_timeout_s
    try:
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                sock.connect(socket_path(folder_fd, CONSOLE))
                break
            except OSError:
                sock.close()
                if not vmstate.alive(folder) or time.monotonic() > deadline:
                    raise _boot_failed(plan, folder, None, "QEMU did not start") from None
                time.sleep(0.002)
        console = Console(sock, plan.debug)
        channel = Channel(folder_fd)
        left = max(1.0, deadline - time.monotonic())
        try:
            channel.handshake(left, alive=lambda: vmstate.alive(folder))
        except TimeoutError:
            raise _boot_failed(
                plan, folder, console,
                f"the VM did not finish booting within {plan.boot_timeout_s:.0f} s "
                f"({plan.host.accel.upper()}) and was killed",
                timed_out=True,
            ) from None  # fmt: skip
        except ChannelClosed:
            raise _boot_failed(plan, folder, console, "the VM stopped while booting") from None
    except BaseException:
        if channel is not None:
            channel.close()
        if console is not None:
            console.close()
        os.close(folder_fd)
        vmstate.kill(folder)
        raise
    if not plan.debug:
        console.close()
    return Booted(
        folder=folder,
        folder_fd=folder_fd,
        channel=channel,
        console=console,
        boot_s=time.monotonic() - started,
    )


def _boot_failed(
    plan: BootPlan, folder: Path, console: Console | None, what: str, *, timed_out: bool = False
) -> BootFailed:
    tail = console.text() if console is not None else ""
    message = what
    with contextlib.suppress(OSError):
        log = (folder / "qemu.log").read_bytes()[-800:].decode("utf-8", errors="replace").strip()
        if log:
            message += f"; qemu: {log}"
    message += (
        f"; console: {tail}"
        if tail
        else "; no console output (VIBE_DEBUG=1 shows the kernel's messages)"
    )
    return (BootTimedOut if timed_out else BootFailed)(message, what)


def shares_of(mounts: Sequence[nc.Mount]) -> tuple[Share, ...]:
    """The folders among a run's mounts, each with its virtiofs tag (``fs0``, ``fs1`` …)."""
    shares: list[Share] = []
    for mount in mounts:
        if mount.is_file:
            continue
        if not mount.container_path.startswith("/") or "\n" in mount.container_path:
            raise nc.UserError(
                f"guest path {mount.container_path!r} of {mount.host_path} is not valid"
            )
        shares.append(
            Share(
                tag=f"fs{len(shares)}",
                source=Path(mount.host_path),
                guest=mount.container_path,
                readonly=mount.readonly,
            )
        )
    return tuple(shares)
