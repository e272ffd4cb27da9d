"""Copy-on-write cloning of raw disk images, never a silent full byte copy.

Best to worst: a reflink (``ioctl(FICLONE)`` on Linux btrfs/XFS/bcachefs,
``clonefile(2)`` on macOS APFS) shares the blocks and takes constant time; a
sparse copy copies only the allocated extents (``SEEK_DATA``/``SEEK_HOLE`` with
``os.copy_file_range``, else ``pread``/``pwrite`` of those extents), so holes
stay holes; where the file system cannot report extents, a scan copies every
block but writes only the non-zero ones (still sparse). The clone is written
under a temporary name in the destination folder, fsynced, then renamed, so an
interruption never leaves a half image under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from attrs import define

from nanoclaw_runtimes_core.errors import UserError

Method = Literal["reflink", "clonefile", "sparse", "sparse-scan"]

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
CHUNK = 8 * 2**20
TEMP_TAG = ".partial-"

# Errors meaning "this file system / kernel cannot do that", so try the next method.
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


class CloneError(UserError):
    """A clone failed; nothing was left under the destination name."""


@define(frozen=True, kw_only=True)
class CloneResult:
    """How a clone was made: the method and how many bytes were really copied."""

    path: Path
    method: Method
    bytes_copied: int


def temp_name(final: Path) -> Path:
    """A temporary sibling of ``final``: hidden, tagged with our pid so stale ones can be found."""
    return final.with_name(f".{final.name}{TEMP_TAG}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temps(final: Path, *, include_live: bool = False) -> list[Path]:
    """Temporaries of ``final`` left by processes that died (or all of them with include_live)."""
    prefix = f".{final.name}{TEMP_TAG}"
    found: list[Path] = []
    try:
        entries = list(os.scandir(final.parent))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if include_live or not pid_text.isdigit() or not _pid_alive(int(pid_text)):
            found.append(Path(entry.path))
    return found


def remove_stale_temps(final: Path, *, include_live: bool = False) -> list[Path]:
    """Delete the stale temporaries of ``final``; return what was removed."""
    removed = []
    for p in stale_temps(final, include_live=include_live):
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it onto ``final``.

    On any exception (KeyboardInterrupt and a full disk included) the temporary
    is removed and ``final`` is left as it was.
    """
    tmp = temp_name(final)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            tmp.unlink()
        raise


# --------------------------------------------------------------------------- methods


def _reflink_linux(src_fd: int, dst_fd: int) -> bool:
    import fcntl

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


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int, state: dict) -> None:
    done = 0
    while done < length:
        n = min(CHUNK, length - done)
        copied = 0
        if state["cfr"]:
            try:
                copied = os.copy_file_range(src_fd, dst_fd, n, offset + done, offset + done)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                state["cfr"] = False
        if not copied:
            buf = os.pread(src_fd, n, offset + done)
            if not buf:
                return  # file shrank under us: nothing more to copy
            copied = os.pwrite(dst_fd, buf, offset + done)
        done += copied
        state["progress"](copied)


def _sparse_copy(src_fd: int, dst_fd: int, size: int, progress: Callable[[int], None]) -> int:
    state = {"cfr": hasattr(os, "copy_file_range"), "progress": progress}
    total = 0
    for offset, length in data_extents(src_fd, size):
        _copy_range(src_fd, dst_fd, offset, length, state)
        total += length
    return total


def _scan_copy(src_fd: int, dst_fd: int, size: int, progress: Callable[[int], None]) -> int:
    """For file systems without SEEK_DATA: read all, write only non-zero blocks."""
    block = 64 * 1024
    zero = bytes(block)
    total = 0
    offset = 0
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
        return exc.errno == errno.ENXIO  # empty or all-hole file: still supported
    return True


def copy_into(
    src: Path,
    dst: Path,
    *,
    allow_reflink: bool = True,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[Method, int]:
    """Clone ``src`` into the new file ``dst`` (which must not exist); no rename, no cleanup."""
    if allow_reflink and sys.platform == "darwin" and _clonefile_macos(src, dst):
        return "clonefile", 0
    src_fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(src_fd).st_size
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if (
                allow_reflink
                and sys.platform.startswith("linux")
                and _reflink_linux(src_fd, dst_fd)
            ):
                return "reflink", 0
            os.ftruncate(dst_fd, size)  # the holes
            if _seek_data_works(src_fd):
                return "sparse", _sparse_copy(src_fd, dst_fd, size, progress)
            return "sparse-scan", _scan_copy(src_fd, dst_fd, size, progress)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def clone_image(
    src: Path,
    dst: Path,
    *,
    allow_reflink: bool = True,
    progress: Callable[[int], None] = lambda n: None,
) -> CloneResult:
    """Clone ``src`` to ``dst`` atomically (temporary name, fsync, rename) and say how.

    Raises :class:`CloneError` with a plain message on a full disk or an I/O
    error; the destination is then as it was before and no temporary remains.
    """
    try:
        with atomic_output(dst) as tmp:
            method, copied = copy_into(src, tmp, allow_reflink=allow_reflink, progress=progress)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CloneError(
                f"not enough free space in {dst.parent} to clone {src.name} into {dst.name} "
                f"(needs about {allocated_bytes(src) / 2**20:.0f} MB): free some space, "
                f"or put VIBE_IMAGES_DIR on a file system with reflinks (APFS, btrfs, XFS)"
            ) from exc
        raise CloneError(f"could not clone {src} to {dst}: {exc}") from exc
    return CloneResult(path=dst, method=method, bytes_copied=copied)


def allocated_bytes(path: Path) -> int:
    """What a file really costs on disk (``st_blocks * 512``)."""
    return os.stat(path).st_blocks * 512
