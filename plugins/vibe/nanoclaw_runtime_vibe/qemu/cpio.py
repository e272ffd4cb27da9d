"""A minimal writer of ``newc`` cpio archives, the format Linux unpacks as an initramfs.

The kernel accepts several archives concatenated, later entries overriding
earlier ones: the engine appends a small per-run archive (the guest's mount
table) to the cached initramfs instead of rebuilding it.
"""

from __future__ import annotations

import stat
from typing import BinaryIO

_TRAILER = "TRAILER!!!"


class CpioWriter:
    """Writes entries one by one; call :meth:`close` to write the trailer."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", *, nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,  # uid
            0,  # gid
            nlink,
            0,  # mtime: fixed, so archives are reproducible
            len(data),
            0,
            0,
            0,
            0,
            len(encoded),
            0,
        )
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + encoded)
        self._pad(len(header) + len(encoded))
        self._out.write(data)
        self._pad(len(data))

    def _pad(self, n: int) -> None:
        self._out.write(b"\0" * (-n % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        """A folder (parents must have been added first)."""
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """A regular file with ``data``."""
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """A symbolic link to ``target``."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> None:
        """Write the trailer entry that ends the archive."""
        self._entry(_TRAILER, 0, nlink=1)
