"""The host folder of one vibe VM, and safe access to the share the guest writes.

One VM per disk ever, so the folder is named after the disk: ``<area>/vm-<digest>``,
where the area is ``nc.runs_dir()/vibe`` (a private, memory-backed folder of this user)
or, when the CLI runs as root, a root-owned ``nanoclaw-vibe`` folder beside it: vibe then
runs as the unprivileged sandbox user, who may traverse the area and the VM folder and
owns only what vibe writes (``ctl/``, ``tmp/``, ``home/``). Inside::

    .owner        flock held by the keeper and by vibe (inherited) for the VM's whole life
    vm.json       the VM's record: group, project, boot key, pids, idle deadline
    launch.json   how the keeper starts vibe (argv, environment, timeouts)
    exit.json     why the VM ended (the keeper writes it last)
    script.sh     the script vibe types (one fixed line)
    boot/         shared read-only: the guest loop, the mount table, the example agent
    ctl/          shared read-write: run requests in, results out (see :mod:`.script`)
    m/<i>         safely named links to the host folders of the mounts, shared as themselves
    owners/<run>  flock of the host process following a run (a dead one is cancelled)
    pids.json     the keeper's and vibe's process ids (the keeper writes it)
    tmp/, home/   vibe's TMPDIR (its EFI variable store) and HOME

Everything the guest can write (``ctl/``) is read and written through open folder
descriptors that never follow a link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc

OWNER = ".owner"
RECORD = "vm.json"
LAUNCH = "launch.json"
EXIT = "exit.json"
SCRIPT = "script.sh"
NEW_SUFFIX = ".new"
MAX_SMALL = 64 * 1024
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SAFE_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")


def vm_user_ids(user: nc.SandboxUser) -> tuple[int, int] | None:
    """The (uid, gid) the VM runs as when that is not this process's user (the CLI runs as
    root), else None."""
    if os.geteuid() == 0 and user.uid != 0:
        return (user.uid, user.gid)
    return None


def area(*, for_other_user: bool) -> Path:
    """The folder of this host's VM folders, created and checked (ours, a real folder)."""
    runs = nc.runs_dir()
    if not for_other_user:
        path, mode = runs / "vibe", 0o700
    else:
        path, mode = runs.parent / "nanoclaw-vibe", 0o711
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise nc.UserError(
            f"{path} is not a folder of this user (a link, a file or someone else's); remove it"
        )
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    if not set(str(path)) <= _SAFE_PATH:
        raise nc.UserError(
            f"the VM folder {path} has characters vibe cannot take in a --mount (':', spaces "
            "and the like); set TMPDIR or XDG_RUNTIME_DIR to a plain path"
        )
    return path


def vm_name(disk: Path) -> str:
    """The VM folder's name for ``disk``."""
    return "vm-" + hashlib.sha256(os.fsencode(str(disk))).hexdigest()[:16]


# --------------------------------------------------------------------------- fd-based files


def _open_dir(parent: int | None, name: str | Path) -> int:
    return os.open(name, _DIR) if parent is None else os.open(name, _DIR, dir_fd=parent)


def rmtree_at(parent: int, name: str) -> None:
    """Remove ``name`` in the folder ``parent`` and all under it, never following a link."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
        return
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            return
        raise
    try:
        for entry in list(os.scandir(fd)):
            rmtree_at(fd, entry.name)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=parent)


Keep = Mapping[str, "Keep"]
"""What :func:`clear_folder` keeps: entry name -> what to keep inside it (empty: all of it)."""


def clear_folder(path: Path, keep: Keep) -> None:
    """Remove everything in the folder ``path`` but what ``keep`` names. Never follows a
    link; a name kept with something inside it that is not a real folder is removed."""
    with contextlib.suppress(OSError):
        _clear_at(None, path, keep)


def _clear_at(parent: int | None, name: str | Path, keep: Keep) -> None:
    fd = _open_dir(parent, name)
    try:
        for entry in list(os.scandir(fd)):
            inside = keep.get(entry.name)
            with contextlib.suppress(OSError):
                if inside is None:
                    rmtree_at(fd, entry.name)
                elif inside:
                    try:
                        _clear_at(fd, entry.name, inside)
                    except OSError:
                        rmtree_at(fd, entry.name)
    finally:
        os.close(fd)


def write_file_at(
    parent: int, name: str, data: bytes, *, mode: int = 0o600, owner: tuple[int, int] | None
) -> None:
    """Create ``name`` (it must not exist) in folder ``parent`` with ``data``; a full disk
    removes it and raises :class:`nc.NoSpace`."""
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=parent,
    )
    try:
        os.fchmod(fd, mode)  # whatever the umask
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=parent)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise nc.NoSpace(
                f"no space left while writing a run request ({exc.strerror}); free some space"
            ) from None
        raise
    os.close(fd)


def mkdir_at(parent: int, name: str, *, mode: int = 0o700, owner: tuple[int, int] | None) -> int:
    """Create the folder ``name`` in ``parent`` (it must not exist) and return it open."""
    os.mkdir(name, mode, dir_fd=parent)
    fd = os.open(name, _DIR, dir_fd=parent)
    os.fchmod(fd, mode)  # whatever the umask
    if owner is not None:
        os.fchown(fd, *owner)
    return fd


def write_tree(
    parent: int,
    name: str,
    files: Mapping[str, bytes],
    *,
    owner: tuple[int, int] | None,
    mode: int = 0o700,
) -> None:
    """Create folder ``name`` in ``parent`` holding ``files`` (relative paths; their folders
    are made as needed); folders get ``mode``, files ``mode`` without execute bits."""
    top = mkdir_at(parent, name, owner=owner, mode=mode)
    opened: dict[str, int] = {"": top}
    try:
        for rel, data in files.items():
            *folders, leaf = rel.split("/")
            here = ""
            for part in folders:
                key = f"{here}/{part}" if here else part
                if key not in opened:
                    opened[key] = mkdir_at(opened[here], part, owner=owner, mode=mode)
                here = key
            write_file_at(opened[here], leaf, data, owner=owner, mode=mode & 0o666)
    finally:
        for fd in opened.values():
            os.close(fd)


# --------------------------------------------------------------------------- the share


class Share:
    """The control share (``ctl/``), as the host sees it: every access relative to an open
    descriptor of the folder, no link followed, regular files only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def _sub(self, *parts: str) -> Iterator[int]:
        fds = [_open_dir(None, self.folder)]
        try:
            for part in parts:
                fds.append(_open_dir(fds[-1], part))
            yield fds[-1]
        finally:
            for fd in fds:
                os.close(fd)

    def lstat(self, *parts: str) -> os.stat_result | None:
        """The status of ``ctl/<parts>`` (a link is not followed), or None."""
        try:
            with self._sub(*parts[:-1]) as fd:
                return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None

    def exists(self, *parts: str) -> bool:
        return self.lstat(*parts) is not None

    def read_small(self, *parts: str, limit: int = MAX_SMALL) -> bytes | None:
        """The content of the regular file ``ctl/<parts>`` (None when missing, a link or not a
        regular file, or larger than ``limit``)."""
        fd = self.open_file(*parts)
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_size > limit:
                return None
            return os.read(fd, limit + 1)[:limit]
        finally:
            os.close(fd)

    def open_file(self, *parts: str) -> int | None:
        """``ctl/<parts>`` opened for reading if it is a regular file (never through a link)."""
        try:
            with self._sub(*parts[:-1]) as dfd:
                fd = os.open(
                    parts[-1],
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=dfd,
                )
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def touch(self, *parts: str, owner: tuple[int, int] | None) -> None:
        """Create the empty file ``ctl/<parts>`` (its folders must exist); never through a link."""
        with self._sub(*parts[:-1]) as dfd, contextlib.suppress(FileExistsError):
            write_file_at(dfd, parts[-1], b"", owner=owner)

    def remove(self, *parts: str) -> None:
        """Remove ``ctl/<parts>`` and all under it (never following a link)."""
        with contextlib.suppress(OSError), self._sub(*parts[:-1]) as dfd:
            rmtree_at(dfd, parts[-1])

    def submit(
        self, name: str, files: Mapping[str, bytes], *, owner: tuple[int, int] | None
    ) -> None:
        """Drop the request ``req/<name>`` with ``files``: built under a hidden name, renamed
        into place once complete (the guest only takes names without a leading dot)."""
        hidden = f".{name}.tmp"
        with self._sub() as top:
            with contextlib.suppress(FileExistsError):
                os.close(mkdir_at(top, "req", owner=owner))
            with self._sub("req") as req:
                rmtree_at(req, hidden)
                try:
                    write_tree(req, hidden, files, owner=owner)
                    os.rename(hidden, name, src_dir_fd=req, dst_dir_fd=req)
                except BaseException:
                    rmtree_at(req, hidden)
                    raise


# --------------------------------------------------------------------------- the VM folder


class VmFolder:
    """The host folder of the VM of one disk (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.share = Share(path / "ctl")

    @classmethod
    def for_disk(cls, disk: Path, user: nc.SandboxUser) -> VmFolder:
        """The folder of ``disk``'s VM (it may not exist)."""
        return cls(area(for_other_user=vm_user_ids(user) is not None) / vm_name(disk))

    @property
    def owner_file(self) -> Path:
        return self.path / OWNER

    def alive(self) -> bool:
        """Whether the VM (its keeper or vibe) is running."""
        return nc.owner_alive(self.owner_file)

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            with nc.SafeDir.open(self.path) as folder:
                raw = folder.read(name, MAX_SMALL)
        except (OSError, nc.UserError):
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def record(self) -> dict[str, Any] | None:
        """The VM's record (``vm.json``), or None."""
        return self._read_json(RECORD)

    def exit_info(self) -> dict[str, Any] | None:
        """Why the VM ended (``exit.json``, written by the keeper), or None."""
        return self._read_json(EXIT)

    def pids(self) -> dict[str, Any]:
        """The keeper's and vibe's process ids (``pids.json``, written by the keeper)."""
        return self._read_json("pids.json") or {}

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        """Replace ``name`` in the folder with ``data`` (atomically, never through a link)."""
        with nc.SafeDir.open(self.path) as folder:
            folder.replace_file(name, json.dumps(data, indent=1).encode(), mode=0o644)

    def update_record(self, **changes: Any) -> None:
        record = self.record()
        if record is not None:
            self.write_json(RECORD, {**record, **changes})

    def wait_dead(self, timeout: float) -> bool:
        """Wait until the VM's processes are gone; returns whether they are."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def remove(self) -> bool:
        """Remove the folder if no VM uses it; returns whether it is gone."""
        if self.alive():
            return False
        with contextlib.suppress(FileNotFoundError):
            nc.remove_tree(self.path)
        return not os.path.lexists(self.path)

    def heartbeat_age(self) -> float | None:
        """Seconds since the guest loop last wrote its heartbeat (host clock), or None."""
        st = self.share.lstat("hb") or self.share.lstat("ready")
        return None if st is None else max(0.0, time.time() - st.st_mtime)


def create(path: Path, *, shared: bool) -> tuple[VmFolder, int]:
    """Make a fresh VM folder at ``path`` with its owner lock held; returns it and the
    locked descriptor (to pass to the keeper). ``shared``: vibe runs as another user, who
    may traverse it. Built under a hidden name and renamed, so a sweeper never sees it
    unowned."""
    import secrets

    building = path.with_name(f".{path.name}.{secrets.token_hex(4)}{NEW_SUFFIX}")
    building.mkdir(mode=0o700)
    try:
        if shared:
            os.chmod(building, 0o711)
        fd = os.open(building / OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        nc.lock_fd(fd, wait_s=0)  # a folder only this process knows yet: always free
        os.rename(building, path)
    except BaseException:
        nc.remove_tree(building)
        raise
    return VmFolder(path), fd


def folders(area_path: Path) -> list[VmFolder]:
    """Every VM folder in an area."""
    found = []
    with contextlib.suppress(OSError), os.scandir(area_path) as entries:
        for entry in entries:
            if entry.name.startswith("vm-") and entry.is_dir(follow_symlinks=False):
                found.append(VmFolder(Path(entry.path)))
    return found


def sweep_area(area_path: Path) -> list[str]:
    """Remove the folders of VMs that are gone (what they held: requests, the console, EFI
    variables) and half-made ones; one line each."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(area_path) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") and entry.name.endswith(NEW_SUFFIX):
                with contextlib.suppress(OSError):
                    if time.time() - entry.stat(follow_symlinks=False).st_mtime > 60:
                        nc.remove_tree(path)
                continue
            if entry.name.startswith("vm-") and VmFolder(path).remove():
                removed.append(f"removed the folder of a vibe VM that has stopped: {path}")
    return removed
