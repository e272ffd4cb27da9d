"""Choosing KVM or TCG: a bounded test boot, its verdict cached per host boot.

``/dev/kvm`` may exist and still not boot guests (nested virtualisation that
hangs): the only honest test is a real boot with a deadline. The verdict, the
host's TSC frequency and the QEMU binary's confinement flags (:mod:`.confine`) are
cached in ``~/.cache/nanoclaw-runtimes/qemu-host.json`` (``$XDG_CACHE_HOME``) and
reused until the host reboots or the QEMU binary or guest kernel changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from nanoclaw_runtimes_core.record import Record

from . import confine
from .kernel import BOOTED, KernelFiles
from .tsc import measure_tsc_khz

PROBE_TIMEOUT_S = 8.0


class HostInfo(Record):
    """What this host's QEMU can do: the accelerator to use and why, the TSC frequency, and
    how QEMU confines itself."""

    accel: str
    reason: str
    tsc_khz: int | None
    confinement: confine.Confinement


def cache_file() -> Path:
    """Where the verdict is cached (one per user and host boot)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nanoclaw-runtimes" / "qemu-host.json"


def boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return "unknown"


def kvm_usable() -> str | None:
    """None when /dev/kvm can be opened read-write, else why not."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not accessible to this user (add it to the kvm group)"
    return None


def probe_argv(qemu: str, files: KernelFiles) -> list[str]:
    """A minimal KVM boot: no disk, no shares; the guest prints its boot line and powers off."""
    return [
        qemu,
        *("-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1"),
        *("-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio"),
        *("-kernel", str(files.kernel), "-initrd", str(files.initrd)),
        *("-append", "console=ttyS0 quiet panic=-1 nanoclaw.probe"),
    ]


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the probe is killed if this process dies (a hung KVM probe must not
    outlive a host process killed while it waits)."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:  # pragma: no cover - runs in the forked child
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return setup


def boot_within(argv: list[str], marker: str, timeout_s: float) -> tuple[bool, str]:
    """Run ``argv`` until ``marker`` shows on stdout or ``timeout_s`` passes; always reaps it.

    Returns (seen, output tail)."""
    proc = subprocess.Popen(
        argv,
        preexec_fn=_die_with_parent(),
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout_s
    try:
        fd = proc.stdout.fileno()
        while marker.encode() not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    return marker.encode() in out, out[-800:].decode("utf-8", errors="replace")


def host_info(qemu: str, files: KernelFiles, requested: str) -> HostInfo:
    """The accelerator for ``requested`` (auto, kvm or tcg), the TSC frequency and QEMU's
    confinement flags; each measured once and cached."""
    cache = cache_file()
    key = {"boot_id": boot_id(), "qemu": qemu, "binary": _binary_id(qemu), "kernel": files.version}
    cached: dict = {}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_text())
    if cached.get("key") != key:
        cached = {"key": key}
    missing = {"tsc_khz", "confine"} - set(cached)
    if "tsc_khz" in missing:
        cached["tsc_khz"] = measure_tsc_khz()
    if "confine" in missing:
        found = confine.probe(qemu)
        cached["confine"] = {"seccomp": found.seccomp, "drop_flag": found.drop_flag}
    if requested == "tcg":
        accel, reason = "tcg", "VIBE_QEMU_ACCEL=tcg"
    else:
        if "kvm" not in cached:
            missing.add("kvm")
            why = kvm_usable()
            if why is None:
                ok, _tail = boot_within(probe_argv(qemu, files), BOOTED, PROBE_TIMEOUT_S)
                why = (
                    None
                    if ok
                    else f"a test boot with KVM did not finish in {PROBE_TIMEOUT_S:.0f} s"
                )
            cached["kvm"] = {"ok": why is None, "reason": why or "a test boot with KVM worked"}
        kvm = cached["kvm"]
        if requested == "kvm" or kvm["ok"]:
            accel, reason = "kvm", kvm["reason"]
        else:
            accel, reason = "tcg", f"KVM unusable: {kvm['reason']}; using TCG"
    if missing:
        _write_json(cache, cached)
    flags = cached["confine"] if isinstance(cached["confine"], dict) else {}
    return HostInfo(
        accel=accel,
        reason=reason,
        tsc_khz=cached["tsc_khz"],
        confinement=confine.Confinement(
            seccomp=bool(flags.get("seccomp")), drop_flag=flags.get("drop_flag")
        ),
    )


def _binary_id(path: str) -> list[int]:
    """The QEMU binary's identity on disk: an upgrade in place changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def describe(requested: str) -> str:
    """The accelerator as ``status`` reports it, from the cached verdict (no test boot)."""
    if requested == "tcg":
        return "TCG (VIBE_QEMU_ACCEL=tcg)"
    why_not = kvm_usable()
    if why_not:
        return f"TCG ({why_not})"
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache_file().read_text())
        if cached.get("key", {}).get("boot_id") == boot_id() and "kvm" in cached:
            kvm = cached["kvm"]
            return "KVM" if kvm.get("ok") else f"TCG ({kvm.get('reason')})"
    return "KVM if a bounded test boot works (tried at the first boot), else TCG"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
