"""Which VMs this runtime made, and whether the process that owns each one is still alive.

Each VM we create has a record ``<state>/vms/<name>.json`` made BEFORE ``tart
clone`` and removed only AFTER ``tart delete``. Its owner holds an ``flock`` on the
record for as long as it is responsible for the VM; the kernel drops the lock when
the owner dies, however it dies (SIGKILL included). So a VM is one of ours only if
it has a record (a VM the user named like ours is never touched), and it is a
leftover exactly when nobody holds its record's lock nor its claim lock
(``<name>.claim``, held by a run that took over a spare VM).

Records are made under a hidden name, locked, then linked into place, so a
sweeper never sees an unowned record of a live process. They are kept on disk (not
on a memory file system): a leftover of a power cut is still recognised after the
reboot, when no lock is held any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.record import field

from .tartcli import user_home

RECORD = ".json"
CLAIM = ".claim"
READY = ".ready"
RUN_LOG = ".log"
BUILDING = ".new"
STALE_BUILD_S = 60.0


def state_root(configured: str) -> Path:
    """The runtime's per-user folder (``TART_STATE_DIR``), created 0700 and checked: a real
    folder of this user, never a link."""
    path = (
        Path(configured).expanduser()
        if configured
        else user_home() / ".local" / "state" / "nanoclaw-runtimes" / "tart"
    )
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise nc.UserError(
            f"{path} (TART_STATE_DIR) is not a folder of this user (a link, a file or someone "
            "else's); remove it or set TART_STATE_DIR to a folder of your own"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


class Record(nc.Record):
    """What a record says about one of our VMs."""

    name: str
    kind: str
    """``run`` (a run's VM) or ``spare`` (booted ahead)."""
    group: str
    project: str
    tart_home: str
    created: float
    pid: int
    phase: str = "cloning"
    """``cloning`` until ``tart clone`` returned, then ``created``."""
    data: dict[str, Any] = field(factory=dict)


def _load(path: Path) -> Record | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = json.loads(os.read(fd, 1 << 16) or b"{}")
        return Record(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            group=str(raw.get("group", "")),
            project=str(raw.get("project", "")),
            tart_home=str(raw["tartHome"]),
            created=float(raw["created"]),
            pid=int(raw["pid"]),
            phase=str(raw.get("phase", "cloning")),
            data=dict(raw.get("data") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


class Owned:
    """A record this process holds: the VM is ours until :meth:`release`."""

    def __init__(self, folder: Path, record: Record, fd: int) -> None:
        self.folder, self.record, self._fd = folder, record, fd

    @property
    def name(self) -> str:
        return self.record.name

    def update(self, **changes: Any) -> None:
        """Rewrite the record in place (the lock stays on the same file)."""
        data = {**self.record.data, **changes.pop("data", {})}
        self.record = Record(**{**_fields(self.record), **changes, "data": data})
        text = _dump(self.record)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self, *, remove: bool) -> None:
        """Stop owning the VM; ``remove`` (its VM is gone) deletes the record first."""
        if self._fd < 0:
            return
        if remove:
            remove_files(self.folder, self.record.name)
        os.close(self._fd)
        self._fd = -1


def _fields(record: Record) -> dict[str, Any]:
    return {
        "name": record.name,
        "kind": record.kind,
        "group": record.group,
        "project": record.project,
        "tart_home": record.tart_home,
        "created": record.created,
        "pid": record.pid,
        "phase": record.phase,
        "data": record.data,
    }


def _dump(record: Record) -> bytes:
    return json.dumps(
        {
            "name": record.name,
            "kind": record.kind,
            "group": record.group,
            "project": record.project,
            "tartHome": record.tart_home,
            "created": record.created,
            "pid": record.pid,
            "phase": record.phase,
            "data": record.data,
        }
    ).encode()


def remove_files(folder: Path, name: str) -> None:
    """Remove everything kept for ``name`` (record, claim, ready mark, run log)."""
    for suffix in (READY, RUN_LOG, CLAIM, RECORD):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / f"{name}{suffix}")


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``."""
    return nc.owner_alive(path)


def try_lock(path: Path) -> int | None:
    """Take the lock on ``path`` (created if needed) without waiting; the fd, or None."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if not nc.lock_fd(fd, wait_s=0):
        os.close(fd)
        return None
    return fd


class Records:
    """The records of one state folder, for the VMs of one tart home."""

    def __init__(self, state: Path, tart_home: Path) -> None:
        self.folder = state / "vms"
        self.folder.mkdir(exist_ok=True, mode=0o700)
        self.tart_home = str(tart_home)

    def path(self, name: str, suffix: str = RECORD) -> Path:
        return self.folder / f"{name}{suffix}"

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.path(name))

    def create(self, name: str, *, kind: str, group: str, project: str, **data: Any) -> Owned:
        """Record ``name`` as ours, owned by this process; raises FileExistsError when a
        record of that name exists."""
        record = Record(
            name=name,
            kind=kind,
            group=group,
            project=project,
            tart_home=self.tart_home,
            created=time.time(),
            pid=os.getpid(),
            data=data,
        )
        building = self.folder / f".{name}.{uuid.uuid4().hex[:8]}{BUILDING}"
        fd = os.open(
            building, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            nc.lock_fd(fd)
            os.write(fd, _dump(record))
            os.link(building, self.path(name))  # fails, never replaces, when the name is taken
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(building)
        return Owned(self.folder, record, fd)

    def load(self, name: str) -> Record | None:
        return _load(self.path(name))

    def alive(self, name: str) -> bool:
        """Whether some live process owns ``name`` (its record's or its claim's lock)."""
        return is_held(self.path(name)) or is_held(self.path(name, CLAIM))

    def mine(self) -> Iterator[Record]:
        """Every record of this tart home; unreadable ones and stale build files are removed,
        records of tart homes that no longer exist are dropped."""
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.name.endswith(BUILDING):
                    if not is_held(path) and _age(path) > STALE_BUILD_S:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    continue
                if not entry.name.endswith(RECORD) or entry.name.startswith("."):
                    continue
                record = _load(path)
                if record is None:
                    if not is_held(path) and _age(path) > STALE_BUILD_S:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    continue
                if record.tart_home != self.tart_home:
                    if not os.path.isdir(record.tart_home) and not self.alive(record.name):
                        remove_files(self.folder, record.name)
                    continue
                yield record

    def claim(self, name: str, attempts: int = 10) -> int | None:
        """Take over ``name`` (a spare): hold its claim lock; the fd, or None if someone has it.
        Retried briefly, as a liveness check holds the lock for an instant."""
        for _ in range(attempts):
            fd = try_lock(self.path(name, CLAIM))
            if fd is not None:
                return fd
            time.sleep(0.02)
        return None


def _age(path: Path) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def release_fd(fd: int | None) -> None:
    """Close a lock fd from :func:`try_lock` or :meth:`Records.claim`."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
