"""What of the host a bubblewrap sandbox sees: the read-only userland, Python, a small /etc.

Everything here is read-only inside the sandbox. Only the userland (``/usr`` and
the ``/bin``, ``/lib*`` entries next to it), a short list of ``/etc`` files that
programs need to run (dynamic loader cache, TLS certificates, DNS, time zone),
and the interpreter running this process are shown; home folders, ``/var``,
``/run``, ``/root``, ``/srv`` and the rest of ``/etc`` (``shadow``, ``sudoers``,
ssh host keys) are not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Top-level entries of the host shown read-only (symlinks are reproduced as symlinks).
HOST_TOP = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")

#: /etc entries a program may need; missing ones are skipped.
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

#: Top-level entries of a configured root file system that the sandbox provides itself.
ROOTFS_SKIP = frozenset({"proc", "dev", "tmp", "sys", "run", "home", "workspace"})


def top_level_args(root: Path, names: tuple[str, ...] | None) -> list[str]:
    """bwrap arguments showing ``root``'s top-level entries (``names``, or all) at ``/``."""
    args: list[str] = []
    if names is None:
        entries = sorted(e.name for e in os.scandir(root) if e.name not in ROOTFS_SKIP)
    else:
        entries = list(names)
    for name in entries:
        path = root / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.exists():
            args += ["--ro-bind", str(path), f"/{name}"]
    return args


def etc_args(etc: Path = Path("/etc")) -> list[str]:
    """bwrap arguments showing the needed /etc entries read-only."""
    args: list[str] = []
    for name in HOST_ETC:
        path = etc / name
        if path.exists():  # follows symlinks: a dangling resolv.conf link is skipped
            args += ["--ro-bind", str(path), f"/etc/{name}"]
    return args


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def python_paths(*, include_core: bool, hidden: tuple[Path, ...] = ()) -> list[Path]:
    """Folders that make this host's Python (and the core package) run inside the sandbox.

    Paths already shown through the userland (``/usr/...``) are left out, and so is
    any folder that would contain one of ``hidden`` (e.g. the project root: binding
    a venv's parent must not reveal every group's workspace).
    """
    candidates = [sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix]
    real_exe = Path(os.path.realpath(sys.executable))
    candidates.append(str(real_exe.parent.parent))
    if include_core:
        import nanoclaw_runtimes_core

        # Only the package folder: in an editable install its parent is a source checkout.
        candidates.append(str(Path(nanoclaw_runtimes_core.__file__).resolve().parent))
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
    return kept


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


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, unless it is there."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
