"""Shares for the guest: one virtiofsd per mount, started before QEMU and killed after it.

Why virtiofs and not 9p: Debian's cloud kernel (the one booted here) is built
without 9p (``CONFIG_NET_9P`` unset), while ``virtiofs`` and ``fuse`` are
modules it ships; virtiofs is also what vibe itself uses on macOS, and it is
faster than 9p. It needs guest RAM shared with the daemon (QEMU's
``memory-backend-memfd,share=on``).

Two virtiofsd flavours exist: the C one shipped with QEMU up to 7.2
(``/usr/lib/qemu/virtiofsd``, root only, ``-o source=``) and the Rust one
(``/usr/libexec/virtiofsd``, package ``virtiofsd``, ``--shared-dir``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from attrs import define

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError

from .launch import child_setup

CANDIDATES = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd", "virtiofsd")
SOCKET_WAIT_S = 10.0


@define(frozen=True, kw_only=True)
class Virtiofsd:
    """An installed virtiofsd and which command line it speaks."""

    path: str
    flavour: str  # "c" (QEMU <= 7.2) or "rust"


def find_virtiofsd(configured: str | None = None) -> Virtiofsd:
    """The virtiofsd to use (``configured`` first), or EngineUnavailable saying how to get one."""
    names = (configured,) if configured else CANDIDATES
    for name in names:
        path = (
            shutil.which(name) if "/" not in name else (name if os.access(name, os.X_OK) else None)
        )
        if path:
            return Virtiofsd(path=path, flavour=_flavour(path))
    raise EngineUnavailable(
        "virtiofsd not found (it shares the workspace with the guest): install it with "
        "`apt-get install qemu-system-x86` (QEMU <= 7.2 ships /usr/lib/qemu/virtiofsd) or "
        "`apt-get install virtiofsd`, or set VIBE_QEMU_VIRTIOFSD to its path"
    )


@functools.lru_cache(maxsize=8)
def _flavour(path: str) -> str:
    """``c`` or ``rust``, asked once per process (each run would otherwise ask it twice)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
        if "virtiofsd version" in (out.stdout + out.stderr):
            return "c"
    return "rust"


def check_usable(daemon: Virtiofsd) -> str | None:
    """None when this user can run ``daemon``, else why not."""
    if daemon.flavour == "c" and os.geteuid() != 0:
        return (
            f"{daemon.path} (QEMU's C virtiofsd) only runs as root; run as root or install "
            "the Rust virtiofsd (`apt-get install virtiofsd`, /usr/libexec/virtiofsd)"
        )
    return None


def host_read_only(daemon: Virtiofsd, readonly: bool) -> bool:
    """Whether a read-only share is enforced by a read-only bind mount in the daemon's own
    mount namespace (root; the C virtiofsd has no read-only option)."""
    return readonly and (daemon.flavour == "c" or os.geteuid() == 0)


def daemon_argv(daemon: Virtiofsd, *, source: Path, socket: Path, readonly: bool) -> list[str]:
    """The command line serving ``source`` on ``socket`` (see :func:`host_read_only` for how a
    read-only share is enforced when the daemon cannot do it itself)."""
    if daemon.flavour == "c":
        return [
            daemon.path,
            f"--socket-path={socket}",
            "-o",
            f"source={source}",
            "-o",
            "cache=auto",
            "-o",
            "log_level=err",
        ]
    argv = [daemon.path, f"--socket-path={socket}", f"--shared-dir={source}"]
    argv += ["--cache=auto", "--log-level=error"]
    if os.geteuid() != 0:
        argv += ["--sandbox=none"]
        if readonly:
            argv += ["--readonly"]
    return argv


class ShareSet:
    """The running daemons of one boot; :meth:`close` kills them all (and is idempotent)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        daemon: Virtiofsd,
        shares: Sequence[tuple[Path, Path, bool]],
        log: Path,
    ) -> None:
        """Start one daemon per (source, socket, readonly) and wait until every socket exists."""
        with log.open("ab") as err:
            for source, socket, readonly in shares:
                if not source.is_dir():
                    raise UserError(f"cannot share {source} with the guest: it is not a folder")
                argv = daemon_argv(daemon, source=source, socket=socket, readonly=readonly)
                ro = str(source) if host_read_only(daemon, readonly) else None
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=err,
                        stderr=err,
                        start_new_session=True,
                        preexec_fn=child_setup(ro),
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    what = f"{daemon.path} for {source}"
                    if ro is not None:
                        what += " (read-only, in its own mount namespace)"
                    raise EngineUnavailable(f"cannot start {what}: {exc}") from exc
                self.procs.append(proc)
        deadline = time.monotonic() + SOCKET_WAIT_S
        for proc, (source, socket, _ro) in zip(self.procs, shares, strict=False):
            while not socket.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = _tail(log)
                    raise EngineUnavailable(
                        f"virtiofsd could not share {source} with the guest"
                        + (f": {tail}" if tail else "")
                    )
                time.sleep(0.002)

    def close(self) -> None:
        """Kill every daemon's process group and reap it."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs = []


def _tail(path: Path, n: int = 600) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-n:].decode("utf-8", errors="replace").strip()
    return ""
