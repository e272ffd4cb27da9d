"""File access inside folders a sandbox can write, without following what it planted.

A sandbox controls every file in its read-write mounts: it may replace a file
the host reads with a symbolic link (to ``/etc/shadow``, to ``/dev/zero``), a
FIFO (the host's read hangs) or a huge file, and a folder the host writes into
with a link to a folder of its choosing. Every host-side access inside a
group's folders goes through :class:`SafeDir`, which works on open folder
descriptors and never follows a link:

- reads open with ``O_NOFOLLOW | O_NONBLOCK``, accept regular files only and
  stop at a size cap;
- writes create new files with ``O_CREAT | O_EXCL | O_NOFOLLOW``;
- folders are created or opened one component at a time with ``O_NOFOLLOW``;
  a planted link is removed, a planted file or FIFO is moved aside, and each
  repair is reported so the run goes on and the user is told.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import NoSpace, UserError
from .record import Record

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeEntry(UserError):
    """A file the host was about to read is a link, a special file or too large."""


class Repair(Record, kw_only=False):
    """A planted entry that was removed or moved aside, for the user to see."""

    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file"


def _no_space(exc: OSError, path: Path) -> NoSpace:
    return NoSpace(
        f"no space left on the device while writing {path} ({exc.strerror}); free some space "
        "and run again (nothing half-written was kept)"
    )


class SafeDir:
    """An open folder; every operation is relative to it and follows no link.

    Open one with :meth:`open` (the path's last component must not be a link;
    the components above it are trusted: the project root is the user's choice).
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SafeDir:
        """Open ``path``, a folder that is not itself a link. Raises UnsafeEntry or OSError."""
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeEntry(
                    f"{path} is not a folder (a link or a file): refusing it"
                ) from None
            raise
        return cls(fd, path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry's own status (links not followed), or None when it does not exist."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, name: str, limit: int) -> bytes | None:
        """The content of regular file ``name`` (None when missing).

        Raises :class:`UnsafeEntry` when it is a link, a FIFO, a device or a
        folder, or larger than ``limit`` bytes; the message names the file.
        """
        where = self.path / name
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeEntry(
                    f"{where} is a symbolic link; the host never follows one"
                ) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeEntry(f"{where} is {_kind(st.st_mode)}, not a regular file")
            if st.st_size > limit:
                raise UnsafeEntry(f"{where} is {st.st_size} bytes; at most {limit} are read")
            chunks, total = [], 0
            while total <= limit:
                chunk = os.read(fd, min(65536, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                raise UnsafeEntry(f"{where} grew past {limit} bytes while it was read")
            return b"".join(chunks)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ folders

    def child(
        self,
        name: str,
        *,
        create: bool = True,
        mode: int = 0o755,
        owner: tuple[int, int] | None = None,
        repairs: list[Repair] | None = None,
    ) -> SafeDir:
        """Open (or create) the sub-folder ``name``; a planted link is removed and a planted
        file moved aside (both recorded in ``repairs``). ``owner`` (uid, gid) is applied to the
        folder through its descriptor."""
        for _ in range(3):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, mode, dir_fd=self.fd)
                except FileExistsError:
                    continue  # raced with another creator: open it on the next round
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise _no_space(exc, self.path / name) from None
                    raise
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                self._move_aside(name, repairs)
                continue
            child = SafeDir(fd, self.path / name)
            if owner is not None:
                st = os.fstat(fd)
                if (st.st_uid, st.st_gid) != owner:
                    os.fchown(fd, *owner)
            return child
        raise UnsafeEntry(f"{self.path / name} keeps being replaced; refusing to use it")

    def _move_aside(self, name: str, repairs: list[Repair] | None) -> None:
        st = self.lstat(name)
        if st is None:
            return
        where = self.path / name
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(name, dir_fd=self.fd)
            except OSError:
                target = "?"
            os.unlink(name, dir_fd=self.fd)
            what = f"removed a symbolic link planted in place of a folder (it pointed to {target})"
        else:
            aside = f"{name}.planted-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.rename(name, aside, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            what = f"moved {_kind(st.st_mode)} found in place of a folder to {aside}"
        if repairs is not None:
            repairs.append(Repair(where, what))

    def walk(self, parts: tuple[str, ...], **kwargs: object) -> SafeDir:
        """Open (or create) nested sub-folders, one component at a time (see :meth:`child`)."""
        current = self
        opened: list[SafeDir] = []
        try:
            for part in parts:
                current = current.child(part, **kwargs)  # type: ignore[arg-type]
                opened.append(current)
        finally:
            for d in opened[:-1]:
                d.close()
        return current

    # ------------------------------------------------------------------ writing

    def write_new(self, name: str, data: bytes, *, mode: int = 0o600) -> Path:
        """Create ``name`` (it must not exist: an existing file or link is never written
        through) with ``data``; on a full disk the partial file is removed."""
        where = self.path / name
        fd = os.open(name, _NEW_FLAGS, mode, dir_fd=self.fd)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self.fd)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space(exc, where) from None
            raise
        os.close(fd)
        return where

    def replace_file(self, name: str, data: bytes, *, mode: int = 0o600) -> Path:
        """Write ``name`` through a new temporary file and a rename (atomic, never through a
        link: the rename replaces the entry itself)."""
        tmp = f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        self.write_new(tmp, data, mode=mode)
        try:
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        return self.path / name


def remove_tree(path: Path) -> bool:
    """Remove ``path`` and everything under it without following a link (a link itself is just
    unlinked). Returns whether something was removed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return True
    if not _remove_flat_folder(path):
        import shutil

        # shutil.rmtree works on descriptors where the platform allows it: links are not followed.
        shutil.rmtree(path)
    return True


def _remove_flat_folder(path: Path) -> bool:
    """Remove ``path`` when it holds no folder (a run's folder: a lock, a record, a mask),
    through its descriptor as ``shutil.rmtree`` does, without importing shutil (and the
    compression modules it loads) on every run. False, leaving the rest to ``shutil.rmtree``,
    when a folder is inside or the folder cannot be opened as one."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        with os.scandir(fd) as entries:
            names = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    return False
                names.append(entry.name)
        for name in names:
            try:
                os.unlink(name, dir_fd=fd)  # a link is removed itself, never followed
            except FileNotFoundError:
                continue
            except OSError:
                return False  # replaced by a folder meanwhile
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        return False  # something appeared meanwhile
    return True


class Usage(Record, kw_only=False):
    """What a folder or file costs: apparent and allocated bytes, newest modification."""

    apparent: int
    allocated: int
    modified: float | None
    files: int


def disk_usage(path: Path, *, skip: frozenset[str] = frozenset()) -> Usage:
    """The apparent and allocated size of ``path`` (a file or a folder tree), links and special
    files counted as themselves and never followed; top-level names in ``skip`` left out."""
    apparent = allocated = files = 0
    newest: float | None = None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Usage(0, 0, None, 0)
    if not stat.S_ISDIR(st.st_mode):
        return Usage(st.st_size, st.st_blocks * 512, st.st_mtime, 1)
    stack = [(path, True)]
    while stack:
        folder, top = stack.pop()
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if top and entry.name in skip:
                    continue
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                files += 1
                apparent += est.st_size
                allocated += est.st_blocks * 512
                newest = est.st_mtime if newest is None else max(newest, est.st_mtime)
                if stat.S_ISDIR(est.st_mode):
                    stack.append((Path(entry.path), False))
    return Usage(apparent, allocated, newest, files)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[SafeDir]:
    """``with opened(path) as d:`` — :meth:`SafeDir.open` as a context manager."""
    d = SafeDir.open(path)
    try:
        yield d
    finally:
        d.close()
