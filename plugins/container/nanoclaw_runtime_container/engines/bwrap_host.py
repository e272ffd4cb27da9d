"""What of the host a bubblewrap sandbox sees: the read-only userland, a small /etc, Python.

Only the userland (``/usr`` and the ``/bin``, ``/lib*`` entries next to it), a
short list of ``/etc`` files that programs need to run (dynamic loader cache,
TLS certificates, DNS, time zone) and, when the host has no ``/usr/bin/python3``,
the prefix of the interpreter running this process are shown, all read-only.
Home folders, ``/var``, ``/run``, ``/root``, ``/srv`` and the rest of ``/etc``
(``shadow``, ``sudoers``, ssh host keys) are not.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

HOST_TOP = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level entries of the host shown read-only (symlinks are reproduced as symlinks)."""

HOST_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
"""/etc entries a program may need; missing ones are skipped."""

ROOTFS_SKIP = frozenset({"proc", "dev", "tmp", "sys", "run", "home", "workspace"})
"""Top-level entries of a configured root file system that the sandbox provides itself."""

SYSTEM_PYTHON = "/usr/bin/python3"
"""The interpreter the example agent runs with when the host has it (shown through /usr)."""


def top_level(root: Path, names: tuple[str, ...] | None) -> list[tuple[str, Path, str | None]]:
    """``root``'s top-level entries (``names``, or all but :data:`ROOTFS_SKIP`) as
    ``(name, path, link target or None)``; missing entries are left out."""
    if names is None:
        try:
            entries = sorted(e.name for e in os.scandir(root) if e.name not in ROOTFS_SKIP)
        except OSError:
            entries = []
    else:
        entries = list(names)
    found: list[tuple[str, Path, str | None]] = []
    for name in entries:
        path = root / name
        if path.is_symlink():
            found.append((name, path, os.readlink(path)))
        elif path.exists():
            found.append((name, path, None))
    return found


def etc_entries(etc: Path = Path("/etc")) -> list[Path]:
    """The needed /etc entries that exist (a dangling link such as resolv.conf is skipped)."""
    return [etc / name for name in HOST_ETC if (etc / name).exists()]


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def python_paths(*, hidden: tuple[Path, ...] = ()) -> tuple[Path, list[Path]]:
    """The real interpreter running this process and the folders it needs to run its standard
    library, for a sandbox without ``/usr/bin/python3``.

    A virtual environment is not needed (the example agent uses only the standard library)
    and is left out; so are folders already shown through the userland and any folder that
    would contain one of ``hidden`` (e.g. the project root, which would reveal every group).
    """
    exe = Path(os.path.realpath(sys.executable))
    candidates = [sys.base_prefix, sys.base_exec_prefix, str(exe.parent.parent)]
    shown = [Path("/", name) for name in HOST_TOP]
    result: list[Path] = []
    for raw in candidates:
        path = Path(os.path.realpath(raw))
        if path == Path("/") or not path.is_dir() or any(_under(path, s) for s in shown):
            continue
        if any(_under(h.resolve(), path) for h in hidden):
            continue
        result.append(path)
    result.sort(key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in result:
        if not any(_under(path, k) for k in kept):
            kept.append(path)
    return exe, kept


def passwd_lines(uid: int, gid: int) -> tuple[str, str]:
    """The ``/etc/passwd`` and ``/etc/group`` of the sandbox: root, node (``uid``), nobody."""
    users = ["root:x:0:0:root:/root:/bin/sh"]
    groups = ["root:x:0:"]
    if uid != 0:
        users.append(f"node:x:{uid}:{gid}:node:/home/node:/bin/sh")
    if gid != 0:
        groups.append(f"node:x:{gid}:")
    users.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    groups.append("nogroup:x:65534:")
    return "\n".join(users) + "\n", "\n".join(groups) + "\n"


def reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether a process of ``uid``/``gid`` (no supplementary groups) can look ``path`` up:
    every folder above it (after resolving links) grants it search permission. ACLs and
    security modules are not consulted."""
    try:
        real = Path(os.path.realpath(path))
        os.lstat(real)
    except OSError:
        return False
    for folder in real.parents:
        try:
            st = os.stat(folder)
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True
