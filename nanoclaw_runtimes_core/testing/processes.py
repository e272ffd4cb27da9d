"""Helpers for tests that must show a run leaves no process behind (Linux ``/proc``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def processes_with(marker: str) -> list[str]:
    """``pid: command line`` of every live process (not a zombie) whose command line
    contains ``marker``, this process excluded."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def wait_until(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true, or give up and return its last value."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = check()
    return value
