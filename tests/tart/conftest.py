"""Fixtures for the tart runtime tests: the stand-in's state, a project and settings."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path

import pytest
from nanoclaw_runtime_tart.settings import TartSettings
from tart_harness import RecordingSink, make_request, make_settings


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in's state folder (its VM list); kills any VM process a failed test left."""
    path = tmp_path / "tart-state"
    monkeypatch.setenv("TART_STANDIN_STATE", str(path))
    monkeypatch.setenv("TART_STANDIN_BOOT_S", "0.3")
    for var in ("TART_STANDIN_NO_AGENT", "TART_STANDIN_LIMIT", "TART_STANDIN_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    yield path
    for lock in path.glob("vms/*/run.lock"):
        pid = running_pid(lock)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def running_pid(lock: Path) -> int:
    """The pid of the stand-in `tart run` holding ``lock``, or 0 when nobody holds it."""
    with open(lock, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return int(handle.read().strip() or 0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return 0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def slots(tmp_path: Path) -> Path:
    return tmp_path / "slots"


@pytest.fixture
def settings(state: Path, slots: Path) -> TartSettings:
    return make_settings(slots)


@pytest.fixture
def request_for(root: Path, settings: TartSettings):
    """Builds an ExecuteRequest for the project; keyword arguments as make_request's."""

    def build(**kwargs):
        kwargs.setdefault("sink", RecordingSink())
        return make_request(root, kwargs.pop("settings", settings), **kwargs)

    return build
