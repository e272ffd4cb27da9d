"""This user's helpers: found by their lock files (a live helper holds its lock), stopped by
SIGTERM (runs they took go on to their end)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from ..hostdirs import runs_folder
from ..locks import is_held
from ..process import resident_mb
from ..record import Record


class HelperInfo(Record):
    pid: int
    socket: Path
    started: float
    """When it started (its lock file's time), seconds since the epoch."""
    rss_mb: float | None


def helpers(folder: Path | None = None) -> list[HelperInfo]:
    """The live helpers in the runs folder (default: this user's)."""
    base = folder or Path(runs_folder())
    found = []
    for lock in sorted(base.glob("resident-*.sock.lock")):
        try:
            text = lock.read_text().strip()
            started = lock.stat().st_mtime
        except OSError:
            continue
        if text.isdigit() and is_held(lock):
            found.append(
                HelperInfo(
                    pid=int(text),
                    socket=lock.with_name(lock.name.removesuffix(".lock")),
                    started=started,
                    rss_mb=resident_mb(int(text)),
                )
            )
    return found


def stop(folder: Path | None = None, *, wait_s: float = 10.0) -> list[HelperInfo]:
    """Stop the helpers; returns those asked to stop."""
    found = helpers(folder)
    for helper in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper.pid, signal.SIGTERM)
    locks = [h.socket.with_name(h.socket.name + ".lock") for h in found]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(is_held(lock) for lock in locks):
        time.sleep(0.02)
    return found


def wait_for_helper(folder: Path | None = None, *, timeout_s: float = 30.0) -> HelperInfo:
    """The first live helper in the runs folder, waiting for one to start; TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = helpers(folder) if folder is None or folder.is_dir() else []
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no resident helper started within {timeout_s:g} s")
        time.sleep(0.05)
