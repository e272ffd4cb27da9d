"""Copy-on-write cloning of raw disk images, never a silent full byte copy.

Best to worst: a reflink (``ioctl(FICLONE)`` on Linux btrfs/XFS/bcachefs,
``clonefile(2)`` on macOS APFS) shares the blocks and takes constant time; a
sparse copy copies only the allocated extents (``SEEK_DATA``/``SEEK_HOLE`` with
``os.copy_file_range``, else ``pread``/``pwrite``), so holes stay holes; where
the file system cannot report extents, a scan reads every block but writes only
the non-zero ones (still sparse).

Every clone is written into a *partial*: a hidden sibling of the destination,
``.{name}.partial-{token}``, locked (``flock``) by the process writing it for as
long as it writes. It is fsynced and renamed onto the destination only when
complete, so a crash, a kill or a full disk never leaves a half image under the
real name; :func:`sweep_partials` removes the partials whose writer died (the
lock is free) and never one in progress.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import nanoclaw_runtimes_core as nc

Method = Literal["reflink", "clonefile", "sparse", "sparse-scan"]

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
CHUNK = 8 * 2**20
PARTIAL_TAG = ".partial-"
BUILD_TAG = ".build-"
NEW_SUFFIX = ".new"
NEW_GRACE_S = 60.0
"""A ``.new`` name lives for the instant between creating and locking; older ones are dead."""
OWNER = ".owner"

# "This file system / kernel cannot do that": try the next method.
_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
    errno.EBADF,
}
_FULL = (errno.ENOSPC, errno.EDQUOT)


class CloneResult(nc.Record):
    """How a clone was made: the method and how many bytes were really copied."""

    path: Path
    method: Method
    bytes_copied: int


def allocated_bytes(path: Path) -> int:
    """What a file really costs on disk (``st_blocks * 512``)."""
    return os.stat(path).st_blocks * 512


def no_space(target: Path, exc: OSError, *, needed: int | None = None) -> nc.NoSpace:
    """The error for a full disk while writing ``target`` (nothing half-written is kept)."""
    need = f" (needs about {needed / 2**20:.0f} MB)" if needed else ""
    return nc.NoSpace(
        f"no space left in {target.parent} while writing {target.name}{need}: {exc.strerror}; "
        "nothing half-written was kept. Free some space, or put VIBE_IMAGES_DIR on a file "
        "system with reflinks (APFS, btrfs, XFS), where a clone costs no space"
    )


# --------------------------------------------------------------------------- partials


def _token() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _lock_nb(fd: int) -> bool:
    return nc.lock_fd(fd, wait_s=0)


class Partial:
    """An owner-locked temporary file beside ``final``; see :func:`partial_file`."""

    def __init__(self, final: Path, path: Path, fd: int) -> None:
        self.final, self.path, self.fd = final, path, fd


@contextlib.contextmanager
def partial_file(final: Path, *, mode: int = 0o600) -> Iterator[Partial]:
    """Yield a new, empty, locked partial of ``final``; when the ``with`` block ends without an
    exception it is fsynced and renamed onto ``final`` (replacing it), else removed.

    A full disk (``ENOSPC``/``EDQUOT``, also at fsync) becomes :class:`nc.NoSpace`.
    """
    token = _token()
    path = final.with_name(f".{final.name}{PARTIAL_TAG}{token}")
    # Created under a .new name and locked before it gets its sweepable name: a sweeper
    # never sees an unlocked partial that is still being written.
    new = path.with_name(path.name + NEW_SUFFIX)
    try:
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in _FULL:
            raise no_space(final, exc) from None
        raise
    try:
        nc.lock_fd(fd)
        os.rename(new, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(new)
        raise
    done = False
    try:
        yield Partial(final, path, fd)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno in _FULL:
                raise no_space(final, exc) from None
            raise
        os.rename(path, final)
        done = True
        fsync_dir(final.parent)
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield the path of a locked partial of ``final`` to write (by path); on success it is
    fsynced and renamed onto ``final``, on any exception removed."""
    with partial_file(final) as part:
        yield part.path


@contextlib.contextmanager
def build_folder(final: Path) -> Iterator[Path]:
    """A hidden work folder beside ``final`` (``.{name}.build-{token}``), owner-locked for the
    ``with`` block and removed at its end; a killed builder's folder is swept."""
    token = _token()
    folder = final.with_name(f".{final.name}{BUILD_TAG}{token}")
    new = folder.with_name(folder.name + NEW_SUFFIX)
    new.mkdir(mode=0o700)
    try:
        owner = nc.OwnerLock(new / OWNER)
        os.rename(new, folder)
    except BaseException:
        nc.remove_tree(new)
        raise
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            nc.remove_tree(folder)
        owner.release()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def leftover_state(path: Path) -> Literal["live", "dead", "not-ours"]:
    """Whether a partial or build folder in an images folder is being written (``live``), was
    left by a writer that died (``dead``), or is not one of ours."""
    name = path.name
    if not name.startswith(".") or (PARTIAL_TAG not in name and BUILD_TAG not in name):
        return "not-ours"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "not-ours"
    if name.endswith(NEW_SUFFIX):
        return "dead" if time.time() - st.st_mtime > NEW_GRACE_S else "live"
    if stat.S_ISDIR(st.st_mode):
        return "live" if nc.owner_alive(path / OWNER) else "dead"
    if not stat.S_ISREG(st.st_mode):
        return "dead"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return "not-ours"
    try:
        return "dead" if _lock_nb(fd) else "live"
    finally:
        os.close(fd)


def sweep_partials(folder: Path) -> list[Path]:
    """Remove the partials and build folders in ``folder`` whose writer died; return them."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if leftover_state(path) == "dead":
                with contextlib.suppress(OSError):
                    nc.remove_tree(path)
                    removed.append(path)
    return removed


# --------------------------------------------------------------------------- methods


def _reflink_linux(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True


def _clonefile_macos(src: Path, dst: Path) -> bool:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = getattr(libc, "clonefile", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    if fn(os.fsencode(src), os.fsencode(dst), 0) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(dst))


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each allocated extent, from SEEK_DATA/SEEK_HOLE."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        pos = end


class _Copier:
    def __init__(self, src_fd: int, dst_fd: int, progress: Callable[[int], None]) -> None:
        self.src_fd, self.dst_fd, self.progress = src_fd, dst_fd, progress
        self.cfr = hasattr(os, "copy_file_range")

    def range(self, offset: int, length: int) -> None:
        done = 0
        while done < length:
            n = min(CHUNK, length - done)
            copied = 0
            if self.cfr:
                try:
                    copied = os.copy_file_range(
                        self.src_fd, self.dst_fd, n, offset + done, offset + done
                    )
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    self.cfr = False
            if not copied:
                buf = os.pread(self.src_fd, n, offset + done)
                if not buf:
                    return  # the file shrank under us: nothing more to copy
                copied = os.pwrite(self.dst_fd, buf, offset + done)
            done += copied
            self.progress(copied)


def _sparse_copy(src_fd: int, dst_fd: int, size: int, progress: Callable[[int], None]) -> int:
    copier = _Copier(src_fd, dst_fd, progress)
    total = 0
    for offset, length in data_extents(src_fd, size):
        copier.range(offset, length)
        total += length
    return total


def _scan_copy(src_fd: int, dst_fd: int, size: int, progress: Callable[[int], None]) -> int:
    """For file systems without SEEK_DATA: read everything, write only non-zero blocks."""
    block = 64 * 1024
    zero = bytes(block)
    total = offset = 0
    while offset < size:
        buf = os.pread(src_fd, CHUNK, offset)
        if not buf:
            break
        for i in range(0, len(buf), block):
            piece = buf[i : i + block]
            if piece != zero[: len(piece)]:
                os.pwrite(dst_fd, piece, offset + i)
                total += len(piece)
        progress(len(buf))
        offset += len(buf)
    return total


def _seek_data_works(fd: int) -> bool:
    try:
        os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        return exc.errno == errno.ENXIO  # an empty or all-hole file: still supported
    return True


def copy_fd(
    src_fd: int,
    dst_fd: int,
    *,
    allow_reflink: bool = True,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[Method, int]:
    """Clone the open file ``src_fd`` into the empty open file ``dst_fd``; returns the method
    and the bytes really copied (0 for a reflink)."""
    size = os.fstat(src_fd).st_size
    if allow_reflink and sys.platform.startswith("linux") and _reflink_linux(src_fd, dst_fd):
        return "reflink", 0
    os.ftruncate(dst_fd, size)  # the holes
    if _seek_data_works(src_fd):
        return "sparse", _sparse_copy(src_fd, dst_fd, size, progress)
    return "sparse-scan", _scan_copy(src_fd, dst_fd, size, progress)


def clone_image(
    src: Path,
    dst: Path,
    *,
    allow_reflink: bool = True,
    progress: Callable[[int], None] = lambda n: None,
    check_source: Callable[[os.stat_result], None] | None = None,
) -> CloneResult:
    """Clone ``src`` onto ``dst`` through a locked partial (fsync, rename) and say how.

    ``check_source`` is called with the status of the opened source before anything is
    written (to refuse a file that must not be cloned). A full disk raises
    :class:`nc.NoSpace`; the destination is then as it was and no partial remains.
    """
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise nc.UserError(f"{src} is not a regular file; a base must be a raw disk image")
        if check_source is not None:
            check_source(st)
        if allow_reflink and sys.platform == "darwin":
            tmp = dst.with_name(f".{dst.name}{PARTIAL_TAG}{_token()}{NEW_SUFFIX}")
            try:
                cloned = _clonefile_macos(src, tmp)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise no_space(dst, exc) from None
                raise
            if cloned:
                try:
                    os.rename(tmp, dst)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                fsync_dir(dst.parent)
                return CloneResult(path=dst, method="clonefile", bytes_copied=0)
        needed = st.st_blocks * 512
        try:
            with partial_file(dst) as part:
                method, copied = copy_fd(
                    src_fd, part.fd, allow_reflink=allow_reflink, progress=progress
                )
        except OSError as exc:
            if exc.errno in _FULL:
                raise no_space(dst, exc, needed=needed) from None
            raise
        return CloneResult(path=dst, method=method, bytes_copied=copied)
    finally:
        os.close(src_fd)


__all__ = [
    "CloneResult",
    "Method",
    "allocated_bytes",
    "atomic_output",
    "build_folder",
    "clone_image",
    "copy_fd",
    "data_extents",
    "leftover_state",
    "partial_file",
    "sweep_partials",
]
