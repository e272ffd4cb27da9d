"""Runs in progress on this host: a private folder per run, found by name from any process.

Each run gets ``<runs dir>/<run name>/`` (mode 0700, on a memory file system
where the host has one: ``/run`` for root, ``$XDG_RUNTIME_DIR`` otherwise;
``NANOCLAW_RUNS_DIR`` names another) with
an owner lock its process holds and ``run.json`` (project, group, runtime,
pid). Runtimes keep a run's private files there (a VM's sockets, the input a
tool can only read from a file). ``stop NAME`` and ``ps`` find runs through
it; a folder whose owner died is swept by the next ``run``, ``reset`` or
``stats``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError
from .hostdirs import NotPrivate, runs_folder
from .locks import OwnerLock, owner_alive
from .record import Record
from .safefs import remove_tree

OWNER = ".owner"
RECORD = "run.json"
STOP_REQUEST = "stop.json"


def runs_dir() -> Path:
    """This user's runs folder, created (0700) and checked (see :func:`.hostdirs.runs_folder`)."""
    try:
        return Path(runs_folder())
    except NotPrivate as exc:
        raise UserError(str(exc)) from None


class RunRecord(Record):
    """A run as other processes see it."""

    name: str
    pid: int
    root: str
    group: str
    runtime: str
    started: float
    folder: Path

    def to_json(self) -> str:
        data = self.to_dict()
        data["folder"] = str(self.folder)
        return json.dumps(data)


class ActiveRun:
    """The registration of one run; a context manager that removes its folder on exit."""

    def __init__(self, name: str, *, root: Path, group: str, runtime: str) -> None:
        base = runs_dir()
        self.folder = base / name
        if self.folder.exists():
            raise UserError(f"a run named {name!r} is already in progress")
        # Built under a hidden name, locked, then renamed: a sweeper never sees it unowned.
        building = base / f".{name}.{os.getpid()}.new"
        building.mkdir(mode=0o700)
        try:
            self._owner = OwnerLock(building / OWNER)
            self.record = RunRecord(
                name=name,
                pid=os.getpid(),
                root=str(root),
                group=group,
                runtime=runtime,
                started=time.time(),
                folder=self.folder,
            )
            (building / RECORD).write_text(self.record.to_json())
            os.rename(building, self.folder)
        except OSError as exc:
            remove_tree(building)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise UserError(f"a run named {name!r} is already in progress") from None
            raise

    def stop_grace(self, default: float) -> float:
        """The grace another process asked for with ``stop -t N`` (else ``default``)."""
        try:
            data = json.loads((self.folder / STOP_REQUEST).read_text())
            return float(data["grace"])
        except (OSError, ValueError, KeyError, TypeError):
            return default

    def close(self) -> None:
        with contextlib.suppress(OSError):
            remove_tree(self.folder)
        self._owner.release()

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(folder: Path) -> RunRecord | None:
    try:
        data = json.loads((folder / RECORD).read_text())
        return RunRecord(
            name=data["name"],
            pid=int(data["pid"]),
            root=data["root"],
            group=data["group"],
            runtime=data["runtime"],
            started=float(data["started"]),
            folder=folder,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_runs() -> list[RunRecord]:
    """Every run in progress on this host for this user, oldest first."""
    found = []
    with contextlib.suppress(OSError), os.scandir(runs_dir()) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and owner_alive(Path(entry.path) / OWNER):
                record = _read(Path(entry.path))
                if record is not None:
                    found.append(record)
    return sorted(found, key=lambda r: r.started)


def find(name: str) -> RunRecord | None:
    """The run called ``name`` if it is in progress."""
    folder = runs_dir() / name
    if "/" in name or not folder.is_dir() or not owner_alive(folder / OWNER):
        return None
    return _read(folder)


def sweep() -> list[str]:
    """Remove the folders of runs whose process died (what they held: inputs, sockets)."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(runs_dir()) as entries:
        for entry in entries:
            folder = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False) or owner_alive(folder / OWNER):
                continue
            building = entry.name.startswith(".") and entry.name.endswith(".new")
            if not building and not (folder / RECORD).exists():
                continue  # not a run folder (another tool's, or a runtime's own)
            with contextlib.suppress(OSError):
                if building and time.time() - entry.stat().st_mtime < 60:
                    continue  # being built right now
                remove_tree(folder)
                removed.append(
                    f"removed the folder of a run that was killed: {entry.name.lstrip('.')}"
                )
    return removed


def request_stop(record: RunRecord, *, grace: float | None, wait_s: float) -> bool:
    """Ask the run to stop (SIGTERM, after recording ``grace``); wait up to ``wait_s`` for it to
    end. Returns whether it ended."""
    if grace is not None:
        with contextlib.suppress(OSError):
            (record.folder / STOP_REQUEST).write_text(json.dumps({"grace": grace}))
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not owner_alive(record.folder / OWNER):
            return True
        time.sleep(0.02)
    return not owner_alive(record.folder / OWNER)


@contextlib.contextmanager
def registered(name: str, *, root: Path, group: str, runtime: str) -> Iterator[ActiveRun]:
    """``with registered(...) as run:`` — an :class:`ActiveRun` for the ``with`` block."""
    run = ActiveRun(name, root=root, group=group, runtime=runtime)
    try:
        yield run
    finally:
        run.close()
