"""The QEMU engine of the vibe runtime: boots a group's ext4 raw disk on Linux.

One boot: lock the disk, start one virtiofsd per share, boot QEMU's
``microvm`` machine with the host's cloud kernel and our initramfs, stream the
serial console (stdout) through the runtime's decoder, and tear everything
down on every way out. The guest init (``guest/init``) mounts the disk and the
shares, runs the script chrooted into the disk and powers off.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import EngineStatus, Mount, OutputSink
from nanoclaw_runtimes_core.process import ProcessResult, run_streaming

from ..engines import GUEST_RUN_DIR, BaseBuild, BootSpec
from . import accel, kernel, virtiofs
from .cpio import CpioWriter
from .disklock import DiskLock, pidfile_for

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.protocol import MarkerDecoder

BOOT_TIMEOUT_TCG_S = 30
BOOT_TIMEOUT_KVM_S = 10
CONSOLE_TAIL = 2000
GRACE_S = 3.0

# Kernel arguments, each for a measured reason:
#   tsc_early_khz/tsc=reliable  skip TSC calibration, which hangs TCG boots (see tsc.py)
#   mitigations=off             one guest per VM: no cross-tenant side channels to close,
#                               and page-table isolation is costly under TCG
#   cryptomgr.notests           skips ~0.7 s of crypto self-tests under TCG
#   8250.nr_uarts=1             one serial port to probe, not 32
#   pci=off                     microvm has no PCI bus (its virtio devices are found through
#                               ACPI): skips probing for one, ~0.1 s under TCG
BASE_APPEND = (
    "console=ttyS0",
    "panic=-1",
    "mitigations=off",
    "cryptomgr.notests",
    "8250.nr_uarts=1",
    "pci=off",
)


def setting(settings: Any, name: str, default: Any) -> Any:
    """A setting of the QEMU engine, or its default while the settings class lacks it."""
    value = getattr(settings, name, None)
    return default if value in (None, "") else value


def find_qemu(settings: Any) -> str | None:
    """The QEMU executable named by ``VIBE_QEMU`` (a path or a name on PATH), or None."""
    name = str(setting(settings, "qemu_binary", "qemu-system-x86_64"))
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def qemu_version(qemu: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10)
        first = out.stdout.splitlines()[0] if out.stdout else ""
        return first.replace("QEMU emulator version ", "").strip() or None
    return None


@attrs.define
class _Share:
    tag: str
    source: Path
    guest: str
    readonly: bool
    socket: Path


class BootWatch:
    """Watches the console for the guest's boot line; kills QEMU when it does not come in time.

    Also keeps the console's tail for error messages."""

    def __init__(self, timeout_s: float, inner: Callable[[bytes], None] | None) -> None:
        self.timeout_s = timeout_s
        self.inner = inner
        self.booted = threading.Event()
        self.done = threading.Event()
        self.hung = False
        self.tail = b""
        self._seen = b""
        self._proc: subprocess.Popen[bytes] | None = None

    def feed(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner(data)
        self.tail = (self.tail + data)[-CONSOLE_TAIL:]
        if not self.booted.is_set():
            self._seen = (self._seen + data)[-4096:]
            if kernel.BOOTED.encode() in self._seen:
                self.booted.set()

    def start(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        if self.booted.wait(self.timeout_s) or self.done.is_set():
            return
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.hung = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def console_tail(self) -> str:
        from nanoclaw_runtimes_core.protocol import strip_control

        text = strip_control(self.tail.decode("utf-8", errors="replace")).strip()
        return text[-800:]


class QemuEngine:
    """Boots group disks with QEMU (``microvm``, KVM when it works, else TCG)."""

    name = "qemu"

    # ------------------------------------------------------------------ status

    def status(self, settings: Any) -> EngineStatus:
        """Whether QEMU, a guest kernel, busybox and virtiofsd are here; starts no VM."""
        qemu = find_qemu(settings)
        if qemu is None:
            return EngineStatus(
                available=False,
                engine=self.name,
                detail=f"{setting(settings, 'qemu_binary', 'qemu-system-x86_64')} not found",
                fix="apt-get install qemu-system-x86 (or set VIBE_QEMU to the QEMU binary)",
            )
        version = qemu_version(qemu)
        try:
            source, kversion = kernel.find_host_kernel()
            kernel.find_busybox()
            daemon = virtiofs.find_virtiofsd(setting(settings, "qemu_virtiofsd", None))
        except EngineUnavailable as exc:
            return EngineStatus(
                available=False, engine=self.name, version=version, detail=str(exc), fix=str(exc)
            )
        problem = virtiofs.check_usable(daemon)
        if problem:
            return EngineStatus(
                available=False, engine=self.name, version=version, detail=problem, fix=problem
            )
        requested = str(setting(settings, "qemu_accel", "auto"))
        why_not_kvm = accel.kvm_usable()
        if requested == "tcg":
            note = "TCG (VIBE_QEMU_ACCEL=tcg)"
        elif why_not_kvm:
            note = f"TCG: {why_not_kvm}"
        else:
            note = "KVM if a bounded test boot works at first run, else TCG"
        return EngineStatus(
            available=True,
            engine=self.name,
            version=version,
            detail=f"{qemu}; guest kernel {kversion} ({source}); virtiofsd {daemon.path}; "
            f"acceleration: {note}",
        )

    # ------------------------------------------------------------------ boot

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
        """Boot ``spec.disk`` and run ``spec.script`` (see :class:`..engines.Engine`)."""
        qemu = find_qemu(settings)
        if qemu is None:
            raise EngineUnavailable(
                "QEMU not found: install it with `apt-get install qemu-system-x86`, or set "
                "VIBE_QEMU to the qemu-system-x86_64 binary"
            )
        daemon = virtiofs.find_virtiofsd(setting(settings, "qemu_virtiofsd", None))
        problem = virtiofs.check_usable(daemon)
        if problem:
            raise EngineUnavailable(problem)
        files = kernel.ensure_kernel_dir(spec.base.parent)
        host = accel.host_info(qemu, files, str(setting(settings, "qemu_accel", "auto")))
        default_boot = BOOT_TIMEOUT_KVM_S if host.accel == "kvm" else BOOT_TIMEOUT_TCG_S
        boot_timeout = float(setting(settings, "qemu_boot_timeout", 0) or default_boot)
        debug = bool(getattr(settings, "debug", False))
        script_guest = f"{GUEST_RUN_DIR}/{spec.script.relative_to(spec.run_dir).as_posix()}"

        with DiskLock(spec.disk):
            state = Path(tempfile.mkdtemp(prefix="nanoclaw-qemu-"))  # short: socket paths
            shares_running = virtiofs.ShareSet()
            watch = BootWatch(boot_timeout, raw_stdout)
            try:
                shares = [
                    _Share(
                        tag=f"fs{i}",
                        source=Path(m.host_path),
                        guest=m.container_path,
                        readonly=m.readonly,
                        socket=state / f"fs{i}.sock",
                    )
                    for i, m in enumerate(_checked_mounts(spec.mounts))
                ]
                initrd = state / "initrd.img"
                write_run_initrd(files.initrd, initrd, shares, script_guest)
                shares_running.start(
                    daemon, [(s.source, s.socket, s.readonly) for s in shares], state / "fs.log"
                )
                argv = qemu_argv(
                    qemu,
                    files=files,
                    initrd=initrd,
                    host=host,
                    disk=spec.disk,
                    shares=shares,
                    cpus=spec.cpus,
                    ram_mb=spec.ram_mb,
                    network=str(setting(settings, "qemu_network", "none")),
                    extra=shlex.split(str(setting(settings, "qemu_extra_args", ""))),
                    debug=debug,
                )
                env = {**os.environ, **spec.env}
                result = run_streaming(
                    argv,
                    timeout_ms=timeout_ms,
                    sink=sink,
                    env=env,
                    decoder=decoder,
                    passthrough=passthrough,
                    grace_s=GRACE_S,
                    raw_stdout=watch.feed,
                    die_with_parent=True,
                    on_start=watch.start,
                )
            finally:
                watch.done.set()
                shares_running.close()
                shutil.rmtree(state, ignore_errors=True)
        return self._explain(result, watch, host, boot_timeout)

    def _explain(
        self, result: ProcessResult, watch: BootWatch, host: accel.HostInfo, boot_timeout: float
    ) -> ProcessResult:
        """Turn a boot that hung or failed into a result whose error says so, console tail
        included."""
        if result.timed_out or watch.booted.is_set():
            return result
        tail = watch.console_tail()
        hint = "; set VIBE_DEBUG=1 to see the kernel's messages"
        if watch.hung:
            message = (
                f"the VM did not finish booting within {boot_timeout:.0f} s "
                f"({host.accel.upper()}) and was killed"
            )
            code = -signal.SIGKILL
        else:
            message = f"the VM stopped before it finished booting (qemu exit {result.exit_code})"
            code = result.exit_code if result.exit_code else 1
        stderr = result.stderr_tail.strip()
        detail = message + (f"; qemu: {stderr}" if stderr else "")
        detail += f"; console: {tail}" if tail else "; no console output" + hint
        return attrs.evolve(result, exit_code=code, stderr_tail=detail)

    # ------------------------------------------------------------------ base

    def build_base(self, build: BaseBuild, *, settings: Any) -> str:
        """Build a base image (``minimal``: busybox, seconds; else Debian via mmdebstrap or
        debootstrap) and the kernel files beside it."""
        from .base_builder import build_base

        return build_base(build, settings=settings)


def _checked_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    for m in mounts:
        if not m.container_path.startswith("/"):
            raise UserError(f"guest path {m.container_path!r} of {m.host_path} is not absolute")
        if "\n" in m.container_path:
            # the guest init reads each path as one line
            raise UserError(f"guest path {m.container_path!r} of {m.host_path} has a line break")
        if not Path(m.host_path).is_dir():
            raise UserError(
                f"cannot share {m.host_path} with the guest at {m.container_path}: "
                "it is not an existing folder"
            )
    return list(mounts)


def run_config(shares: Sequence[_Share], script_guest: str) -> bytes:
    """A cpio archive with the guest's run configuration (``/etc/nanoclaw/…``)."""
    import io

    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.directory("etc")
    w.directory("etc/nanoclaw")
    w.directory("etc/nanoclaw/mounts")
    for i, s in enumerate(shares):
        d = f"etc/nanoclaw/mounts/{i:03d}"
        w.directory(d)
        w.file(f"{d}/tag", s.tag.encode())
        w.file(f"{d}/path", s.guest.encode())
        w.file(f"{d}/mode", b"ro" if s.readonly else b"rw")
    w.file("etc/nanoclaw/script", script_guest.encode())
    w.close()
    return buf.getvalue()


def write_run_initrd(base: Path, out: Path, shares: Sequence[_Share], script_guest: str) -> None:
    """The cached initramfs with this run's configuration appended (the kernel merges both)."""
    with base.open("rb") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.write(run_config(shares, script_guest))


def qemu_argv(
    qemu: str,
    *,
    files: kernel.KernelFiles,
    initrd: Path,
    host: accel.HostInfo,
    disk: Path,
    shares: Sequence[_Share],
    cpus: int,
    ram_mb: int,
    network: str = "none",
    extra: Sequence[str] = (),
    debug: bool = False,
) -> list[str]:
    """The QEMU command line of one boot."""
    append = list(BASE_APPEND)
    # debug: the kernel's messages, and the guest init's time stamps of each step
    append.append("nanoclaw.trace" if debug else "quiet")
    if host.accel == "tcg" and host.tsc_khz:
        append += [f"tsc_early_khz={host.tsc_khz}", "tsc=reliable"]
    if network == "user":
        append.append("nanoclaw.net=user")
    machine = "microvm,acpi=on,memory-backend=mem"
    argv = [
        qemu,
        *("-M", machine, "-accel", "kvm" if host.accel == "kvm" else "tcg,thread=multi"),
        *("-cpu", "host" if host.accel == "kvm" else "max"),
        *("-m", f"{ram_mb}M", "-smp", str(cpus)),
        *("-object", f"memory-backend-memfd,id=mem,size={ram_mb}M,share=on"),
        # virtio-mmio defaults to the legacy interface, which vhost-user (virtiofsd) refuses
        *("-global", "virtio-mmio.force-legacy=false"),
        *("-nodefaults", "-no-user-config", "-nographic", "-no-reboot"),
        *("-serial", "stdio", "-monitor", "none"),
        *("-kernel", str(files.kernel), "-initrd", str(initrd), "-append", " ".join(append)),
        *(
            "-drive",
            f"id=disk,file={_qemu_path(disk)},format=raw,if=none,cache=writeback,discard=unmap",
        ),
        *("-device", "virtio-blk-device,drive=disk"),
        *("-pidfile", str(pidfile_for(disk))),
    ]
    for s in shares:
        argv += ["-chardev", f"socket,id={s.tag},path={_qemu_path(s.socket)}"]
        argv += ["-device", f"vhost-user-fs-device,chardev={s.tag},tag={s.tag}"]
    if network == "user":
        argv += ["-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0"]
    elif network != "none":
        raise UserError(f"VIBE_QEMU_NETWORK must be none or user, got {network!r}")
    argv += list(extra)
    return argv


def _qemu_path(path: Path) -> str:
    """A path inside a QEMU ``key=value,…`` option: commas are doubled."""
    return str(path).replace(",", ",,")
