"""The private run folder: how the input reaches the guest without stdin.

vibe gives the guest no stdin of ours (it types into the console), so each run
gets a private folder (mode 0700) holding ``input.json`` (0600) and the script,
shared read-only into the guest at ``/nanoclaw/run`` and deleted when the run
ends, whatever happens. On Linux it lives in ``/dev/shm`` (or
``$XDG_RUNTIME_DIR``), memory-backed, so secrets never reach a persistent disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def private_parent() -> Path | None:
    """Where run folders go: a memory file system on Linux when one is writable."""
    if sys.platform.startswith("linux"):
        candidates = [Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent")]
        for candidate in candidates:
            if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK):
                return candidate
    return None  # the platform's private temporary folder


@contextlib.contextmanager
def run_folder(prefix: str = "nanoclaw-vibe-") -> Iterator[Path]:
    """A fresh folder only we can read, removed on exit (exceptions and Ctrl-C included)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=private_parent()))  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist) readable by us only, and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
