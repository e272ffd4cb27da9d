"""A thin, typed wrapper over the ``tart`` command line (one method per subcommand we use)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

from attrs import define

# tart's exit statuses (github.com/cirruslabs/tart, Sources/tart/VMStorageHelper.swift).
EXIT_NOT_FOUND_OR_STATE = 2  # VM missing, not running, or already running
EXIT_USAGE = 64
SYSTEM_LIMIT_TEXT = "exceeds the system limit"

QUICK_S = 60.0  # bound for commands that only touch tart's own files


class TartError(Exception):
    """A tart command failed; the message quotes the command and what tart said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        what = " ".join(self.argv[1:3])
        super().__init__(f"`tart {what}` failed with exit status {returncode}: {self.stderr}")

    @property
    def missing(self) -> bool:
        """The VM does not exist (or is not running, for stop)."""
        return self.returncode == EXIT_NOT_FOUND_OR_STATE

    @property
    def running(self) -> bool:
        """tart refused because the VM is still running (``delete``)."""
        return self.returncode == 1 and "is running" in self.stderr


@define(frozen=True, kw_only=True)
class VMInfo:
    """One row of ``tart list --format json``; ``disk_gb`` apparent, ``size_gb`` allocated."""

    source: str
    name: str
    disk_gb: int
    size_gb: int
    running: bool
    state: str


class Tart:
    """Runs tart subcommands; every method raises :class:`TartError` on a non-zero status."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``tart ARGS``."""
        return [self.executable, *args]

    def _call(self, *args: str, timeout: float | None = QUICK_S) -> str:
        argv = self.argv(*args)
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise TartError(argv, proc.returncode, proc.stderr.decode("utf-8", "replace"))
        return proc.stdout.decode("utf-8", "replace")

    def version(self, timeout: float = 5.0) -> str:
        """``tart --version``."""
        return self._call("--version", timeout=timeout).strip()

    def clone(self, source: str, name: str) -> None:
        """``tart clone SOURCE NAME``; pulls an OCI source first, which can take long."""
        self._call("clone", source, name, timeout=None)

    def set(self, name: str, *, cpus: int, memory_mb: int) -> None:
        """``tart set NAME --cpu N --memory MB``."""
        self._call("set", name, "--cpu", str(cpus), "--memory", str(memory_mb))

    def stop(self, name: str, *, timeout_s: int) -> None:
        """``tart stop NAME --timeout S``: graceful shutdown, then forced after S seconds."""
        self._call("stop", name, "--timeout", str(timeout_s), timeout=timeout_s + QUICK_S)

    def delete(self, name: str) -> None:
        """``tart delete NAME``; tart refuses a running VM."""
        self._call("delete", name)

    def list(self) -> list[VMInfo]:
        """``tart list --format json``: local VMs and OCI images."""
        rows = json.loads(self._call("list", "--format", "json") or "[]")
        return [
            VMInfo(
                source=str(row.get("Source", "")),
                name=str(row.get("Name", "")),
                disk_gb=int(row.get("Disk") or 0),
                size_gb=int(row.get("Size") or 0),
                running=bool(row.get("Running", False)),
                state=str(row.get("State", "")),
            )
            for row in rows
        ]

    def exec_probe(self, name: str, *command: str, timeout: float = 30.0) -> int:
        """Run ``tart exec NAME COMMAND`` quietly and return its exit status."""
        proc = subprocess.run(
            self.argv("exec", name, *command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        return proc.returncode
