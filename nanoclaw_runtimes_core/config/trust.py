"""Which version of a group's ``config.json`` is in force: nothing a sandbox writes decides a run.

The file lives in ``groups/{folder}``, which the group's sandbox sees read-write.
Runtimes show it read-only where the engine allows (a mask), and this module
makes it a boundary on every engine:

- ``data/trust/{folder}.json`` (host-only) keeps the last trusted bytes, the
  digests of versions written by a sandbox, and the run in progress;
- when a run starts, the live file's digest is recorded; when it ends (or, after
  a killed run, when the next command finds the run gone) a changed file is
  *tainted*: its digest is remembered and the last trusted version stays in force;
- a file that differs from both the trusted and every tainted version was edited
  by the user between runs, and becomes the trusted version;
- while a run is in progress, changes are not trusted until it ends.

``nanoclaw-runtimes config trust GROUP`` accepts a tainted version after review.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..record import Record
from ..safefs import SafeDir, UnsafeEntry
from .groupconfig import ABSENT, digest

TRUST_DIR = ("data", "trust")
MAX_TAINTED = 32


class TrustedConfig(Record):
    """The config bytes in force for a group, and why when they are not the live file's."""

    data: bytes | None
    """The bytes in force (None: no config file)."""
    live_digest: str
    notice: str | None = None
    """Set when the live file is not used: what happened and how to accept it."""

    @property
    def digest(self) -> str:
        return digest(self.data)


def _notice(file: str, folder: str, why: str) -> str:
    return (
        f"{file} {why}; its last trusted version stays in force. Review the file, then run "
        f"`nanoclaw-runtimes config trust {folder}` to accept it"
    )


def _record_path(root: Path) -> Path:
    return root.joinpath(*TRUST_DIR)


def _load(root: Path, folder: str) -> dict[str, Any] | None:
    try:
        with SafeDir.open(_record_path(root)) as d:
            raw = d.read(f"{folder}.json", 4 << 20)
    except (FileNotFoundError, UnsafeEntry):
        return None
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _b64(data: bytes) -> str:
    # binascii, not base64: the same text without importing struct and base64 on every run.
    return binascii.b2a_base64(data, newline=False).decode()


def _trusted_bytes(record: dict[str, Any]) -> bytes | None:
    encoded = record.get("trusted")
    return None if encoded is None else binascii.a2b_base64(encoded)


def in_force(
    root: Path, folder: str, live: bytes | None, *, file: str, run_active: bool
) -> TrustedConfig:
    """Decide which bytes are in force, without writing anything.

    ``run_active`` tells whether a run of the group holds its lock right now
    (a recorded run that is not active died without checking its config).
    """
    record = _load(root, folder)
    live_digest = digest(live)
    if record is None:
        return TrustedConfig(data=live, live_digest=live_digest)
    trusted = _trusted_bytes(record)
    trusted_digest = digest(trusted)
    run = record.get("run")
    if isinstance(run, dict) and live_digest != run.get("startDigest"):
        why = (
            "is being changed while a run of the group is in progress"
            if run_active
            else "was changed during a run of the group that was killed"
        )
        return TrustedConfig(
            data=trusted, live_digest=live_digest, notice=_notice(file, folder, why)
        )
    if live_digest in record.get("tainted", ()):
        why = "was changed by the group's sandbox during a run"
        return TrustedConfig(
            data=trusted, live_digest=live_digest, notice=_notice(file, folder, why)
        )
    if live_digest == trusted_digest:
        return TrustedConfig(data=trusted, live_digest=live_digest)
    return TrustedConfig(data=live, live_digest=live_digest)


def last_trusted(root: Path, folder: str, *, file: str, why: str) -> TrustedConfig | None:
    """The last trusted version, for a group whose live file cannot be read safely (a link, a
    FIFO); None when the group has no trust record yet."""
    record = _load(root, folder)
    if record is None:
        return None
    notice = (
        f"{file} cannot be used ({why}); its last trusted version stays in force. Replace it "
        f"with a regular file, then run `nanoclaw-runtimes config trust {folder}`"
    )
    return TrustedConfig(data=_trusted_bytes(record), live_digest="unsafe", notice=notice)


def _save(root: Path, folder: str, record: dict[str, Any]) -> None:
    with SafeDir.open(root) as top:
        d = top.walk(TRUST_DIR, mode=0o700)
        with d:
            d.replace_file(f"{folder}.json", json.dumps(record).encode(), mode=0o600)


def _fresh(record: dict[str, Any] | None) -> dict[str, Any]:
    return dict(record) if record else {"version": 1, "trusted": None, "tainted": []}


def begin_run(root: Path, folder: str, live: bytes | None, config: TrustedConfig) -> None:
    """Record that a run starts (the caller holds the group lock): the config in force becomes
    the trusted version, a dead run's change is settled, the live file's digest is noted."""
    record = _fresh(_load(root, folder))
    tainted = list(record.get("tainted", []))
    if config.notice and config.live_digest not in tainted:
        tainted.append(config.live_digest)
    record["tainted"] = tainted[-MAX_TAINTED:]
    record["trusted"] = None if config.data is None else _b64(config.data)
    record["run"] = {"startDigest": digest(live), "pid": os.getpid(), "started": time.time()}
    _save(root, folder, record)


def end_run(root: Path, folder: str, live_after: bytes | None, *, file: str) -> str | None:
    """Record that the run ended; returns a notice when the sandbox changed the file."""
    record = _fresh(_load(root, folder))
    run = record.pop("run", None) or {}
    notice = None
    after = digest(live_after)
    if after != run.get("startDigest", after):
        tainted = [t for t in record.get("tainted", []) if t != after] + [after]
        record["tainted"] = tainted[-MAX_TAINTED:]
        what = "was created" if run.get("startDigest") == ABSENT else "was changed"
        notice = _notice(file, folder, f"{what} by the group's sandbox during this run")
    _save(root, folder, record)
    return notice


def accept(root: Path, folder: str, live: bytes | None) -> bool:
    """Trust the live file (``config trust``); returns whether it had been refused."""
    record = _fresh(_load(root, folder))
    live_digest = digest(live)
    was = live_digest in record.get("tainted", []) or bool(record.get("run"))
    record["tainted"] = [t for t in record.get("tainted", []) if t != live_digest]
    record["trusted"] = None if live is None else _b64(live)
    record.pop("run", None)
    _save(root, folder, record)
    return was


def forget(root: Path, folder: str) -> None:
    """Drop a group's trust record (its folder is gone)."""
    with contextlib.suppress(FileNotFoundError):
        (_record_path(root) / f"{folder}.json").unlink()
