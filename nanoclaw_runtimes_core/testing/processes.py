"""Helpers for tests that must show a run leaves no process behind, and that no secret reaches a
command line (Linux ``/proc``)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        fields = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[str]:
    return [e.name for e in os.scandir("/proc") if e.name.isdigit()]


def cmdline(pid: int | str) -> bytes:
    """A process's command line, words separated by NUL (empty when it is gone)."""
    try:
        return Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return b""


def processes_with(marker: str) -> list[str]:
    """``pid: command line`` of every live process (not a zombie) whose command line
    contains ``marker``, this process excluded."""
    found = []
    for pid in _pids():
        if pid == str(os.getpid()):
            continue
        state = _stat(pid)
        text = cmdline(pid).replace(b"\0", b" ").decode(errors="replace")
        if state is not None and state[0] != "Z" and marker in text:
            found.append(f"{pid}: {text}")
    return found


def descendants(pid: int | None = None) -> list[int]:
    """The live (not zombie) descendants of ``pid`` (default: this process)."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for p in _pids():
        state = _stat(p)
        if state is not None and state[0] != "Z":
            children.setdefault(state[1], []).append(int(p))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(pids: Iterable[int]) -> list[str]:
    """SIGKILL each process (and its process group); returns what was killed, for messages."""
    killed = []
    for pid in pids:
        text = cmdline(pid).replace(b"\0", b" ").decode(errors="replace")[:200]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != os.getpgrp():  # never the test runner's own group
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid}: {text}")
    return killed


def wait_until(check: Callable[[], T], timeout_s: float = 20.0) -> T:
    """Poll ``check`` until it returns something true, or give up and return its last value."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = check()
    return value


class ArgvWatch:
    """Scans every process's command line, in a thread, for any of ``needles`` (secrets) while
    a run goes on: ``with ArgvWatch(secrets) as watch: run(); assert not watch.hits``."""

    def __init__(self, needles: Iterable[str], interval_s: float = 0.02) -> None:
        self.needles = [n.encode() for n in needles if n]
        self.interval_s = interval_s
        self.hits: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in _pids():
                if pid == me:
                    continue
                line = cmdline(pid)
                if any(n in line for n in self.needles):
                    shown = line.replace(b"\0", b" ").decode(errors="replace")
                    for n in self.needles:
                        shown = shown.replace(n.decode(errors="replace"), "<SECRET>")
                    self.hits.append(f"pid {pid}: {shown[:300]}")
            self.scans += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
