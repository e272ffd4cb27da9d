"""One VM per disk: an exclusive ``flock`` on the image while QEMU runs, and a sweep of VMs
left by a host process that died.

The core's group lock already serialises runs of a group; this lock also
stops anything else (a second tool, a direct call) from booting the same disk
twice, which would corrupt its ext4 file system. The lock belongs to the host
process, so it vanishes with it; a QEMU that outlived its host process (it
should not: it gets PR_SET_PDEATHSIG) is found through its ``-pidfile`` and
killed before the disk is booted again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
from pathlib import Path

from nanoclaw_runtimes_core.errors import UserError

WAIT_S = 5.0


def pidfile_for(disk: Path) -> Path:
    """Where QEMU writes its pid while it runs ``disk``."""
    return disk.parent / ".qemu-run" / f"{disk.name}.pid"


def _qemu_of(pid: int, disk: Path) -> bool:
    """True when ``pid`` is a live QEMU whose command line names ``disk``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"qemu" in a.rsplit(b"/", 1)[-1] for a in argv[:1]) and any(
        os.fsencode(str(disk)) in a for a in argv
    )


def sweep_stale_vm(disk: Path, *, wait_s: float = 10.0) -> int | None:
    """Kill a QEMU of ours left running ``disk`` (its pidfile names it); return its pid."""
    pidfile = pidfile_for(disk)
    try:
        pid = int(pidfile.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 1 or not _qemu_of(pid, disk):
        with contextlib.suppress(OSError):
            pidfile.unlink()
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while _qemu_of(pid, disk) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        pidfile.unlink()
    return pid


class DiskLock:
    """``with DiskLock(disk):`` holds an exclusive flock on the image file."""

    def __init__(self, disk: Path, *, wait_s: float = WAIT_S) -> None:
        self.disk = disk
        self.wait_s = wait_s
        self._fd: int | None = None

    def __enter__(self) -> DiskLock:
        try:
            fd = os.open(self.disk, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UserError(f"the disk {self.disk} does not exist") from None
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise UserError(
                    f"the disk {self.disk} is in use by another VM: one disk cannot be booted "
                    "twice at once (it would corrupt its file system). Wait for the other run "
                    "to end"
                )
            time.sleep(0.1)
        self._fd = fd
        sweep_stale_vm(self.disk)
        pidfile_for(self.disk).parent.mkdir(exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                pidfile_for(self.disk).unlink()
            os.close(self._fd)  # releases the flock
            self._fd = None
