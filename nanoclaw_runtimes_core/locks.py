"""Inter-process locks: one per group, and counted slots for a bounded number of runs.

Both live as lock files under ``data/locks/`` so that separate processes (each
NanoClaw message may start its own ``nanoclaw-runtimes run``) respect them.
The kernel drops a lock when its holder dies, so a crash never leaves one stuck.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from .models import Project


def locks_dir(project: Project) -> Path:
    path = project.data_dir / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def group_lock(project: Project, folder: str, *, namespace: str = "group") -> FileLock:
    """The lock that keeps two executions (or an execution and a reset) of a group apart."""
    return FileLock(str(locks_dir(project) / f"{namespace}-{folder}.lock"))


class SlotPool:
    """A cross-process counting semaphore: at most ``size`` holders of a slot at once."""

    def __init__(self, directory: Path, size: int, *, name: str = "slot") -> None:
        if size < 1:
            raise ValueError(f"a slot pool needs at least one slot, got {size}")
        directory.mkdir(parents=True, exist_ok=True)
        self.size = size
        self._locks = [FileLock(str(directory / f"{name}-{i}.lock")) for i in range(size)]

    def try_acquire(self) -> FileLock | None:
        """Take a free slot without waiting, or return None."""
        for lock in self._locks:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            return lock
        return None

    @contextlib.contextmanager
    def slot(
        self,
        *,
        poll_s: float = 0.1,
        timeout_s: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[int]:
        """Hold one slot for the ``with`` block, waiting (and calling ``on_wait`` once) if all
        are taken; raises :class:`TimeoutError` after ``timeout_s``. Yields the slot index."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        told = False
        while (lock := self.try_acquire()) is None:
            if not told and on_wait is not None:
                on_wait()
                told = True
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no free slot of {self.size} within {timeout_s} s")
            time.sleep(poll_s)
        try:
            yield self._locks.index(lock)
        finally:
            lock.release()
