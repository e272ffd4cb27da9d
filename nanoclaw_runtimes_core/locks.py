"""The one lock implementation: ``flock(2)`` on files.

Group locks keep two runs (or a run and a reset) of one group apart, counted
slots bound how many run at once, and an *owner lock* marks a folder or file as
in use by a live process: a sweeper that can take the lock knows its owner died.
The kernel drops a lock when its holder dies, so a crash never leaves one stuck.
Separate processes and threads of one process respect them alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from .models import Project

LOCKS_DIR = ("data", "locks")


class LockTimeout(TimeoutError):
    """The lock was not free within the time allowed."""


# Unlocked descriptors kept open per lock file: opening a file costs more than locking it.
# Each is its own open file description, so two holders never share one lock.
_idle_fds: dict[Path, list[int]] = {}
_idle_guard = threading.Lock()


def _open_fd(path: Path) -> int:
    with _idle_guard:
        idle = _idle_fds.get(path)
        if idle:
            return idle.pop()
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _park_fd(path: Path, fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    with _idle_guard:
        _idle_fds.setdefault(path, []).append(fd)


def lock_fd(fd: int, *, wait_s: float | None = None, poll_s: float = 0.05) -> bool:
    """Take the exclusive lock on the open file ``fd``: at once (``wait_s=0``), within
    ``wait_s`` seconds, or as long as it takes (None). True when taken, False when another
    open file holds it still. For lock files a caller opens itself (created exclusively,
    handed to a child process); :class:`FileLock` covers the rest."""
    if wait_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)


class FileLock:
    """An exclusive lock on a file; each instance holds its own descriptor.

    Not re-entrant: a second instance on the same path waits, even in the same
    thread, which is what keeps two runs of one group apart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None, *, poll_s: float = 0.05) -> FileLock:
        """Take the lock, waiting at most ``timeout`` seconds (None: as long as it takes;
        0: not at all); raises :class:`LockTimeout`. Returns self, for ``with``."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this lock object")
        fd = _open_fd(self.path)
        try:
            if not lock_fd(fd, wait_s=timeout, poll_s=poll_s):
                raise LockTimeout(f"{self.path} is held by another process")
        except BaseException:
            _park_fd(self.path, fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _park_fd(self.path, fd)

    def __enter__(self) -> FileLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """Whether some live process holds the lock on ``path`` (False when the file is missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return not lock_fd(fd, wait_s=0)
    finally:
        os.close(fd)


def locks_dir(project: Project) -> Path:
    """``data/locks`` of the project, created on first use."""
    path = project.root.joinpath(*LOCKS_DIR)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def group_lock_path(project: Project, folder: str, *, namespace: str = "group") -> Path:
    """The lock file of a group (it may not exist yet)."""
    return project.root.joinpath(*LOCKS_DIR, f"{namespace}-{folder}.lock")


def group_lock(project: Project, folder: str, *, namespace: str = "group") -> FileLock:
    """The lock that keeps two executions (or an execution and a reset) of a group apart."""
    locks_dir(project)
    return FileLock(group_lock_path(project, folder, namespace=namespace))


@contextlib.contextmanager
def hold(lock: FileLock, *, on_wait: Callable[[], None] | None = None) -> Iterator[FileLock]:
    """Hold ``lock`` for the ``with`` block, calling ``on_wait`` once if it is taken."""
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


class SlotPool:
    """A cross-process counting semaphore: at most ``size`` holders of a slot at once."""

    def __init__(self, directory: Path, size: int, *, name: str = "slot") -> None:
        if size < 1:
            raise ValueError(f"a slot pool needs at least one slot, got {size}")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.size = size
        self._paths = [directory / f"{name}-{i}.lock" for i in range(size)]

    def try_acquire(self) -> FileLock | None:
        """Take a free slot without waiting, or return None."""
        for path in self._paths:
            lock = FileLock(path)
            with contextlib.suppress(LockTimeout):
                return lock.acquire(timeout=0)
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
            yield self._paths.index(lock.path)
        finally:
            lock.release()


class OwnerLock:
    """Marks ``path`` (a file or folder's lock file) as owned by this process until released.

    The lock file is ``path`` itself for a file, ``path/.owner`` for a folder. A
    sweeper calls :func:`owner_alive`; when it is False the owner died and the
    thing can be removed.
    """

    def __init__(self, lock_file: Path) -> None:
        self._lock = FileLock(lock_file)
        self._lock.acquire(timeout=0)

    def release(self) -> None:
        self._lock.release()


def owner_alive(lock_file: Path) -> bool:
    """Whether the owner of an :class:`OwnerLock` on ``lock_file`` is still alive."""
    return is_held(lock_file)
