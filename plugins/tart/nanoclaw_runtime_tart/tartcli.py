"""A typed wrapper over the ``tart`` command line: one method per subcommand, each bounded.

Exit statuses, from tart's source (``Root.swift``, ``VMStorageHelper.swift``): 2 for a
VM that does not exist, is not running, or is already running (``run``); 64 for a
usage error (a new name with ``/``); 1 for everything else, including ``delete``
of a running VM and ``run`` of a missing VM (its ``validate()`` wraps the error).
``exec`` passes the guest command's status through, 255 when it died from a signal.
Every command runs in a session of its own with a fixed environment (HOME, tart's
own ``TART_*`` variables), so a Ctrl-C in the terminal reaches the runtime only and
nothing of a group's configuration reaches tart.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import nanoclaw_runtimes_core as nc

EXIT_STATE = 2
"""VM missing, not running, or (``run``) already running."""
EXIT_USAGE = 64
SYSTEM_LIMIT_TEXT = "exceeds the system limit"
AGENT_DOWN_TEXT = "Tart Guest Agent"
QUICK_S = 60.0
LOCAL_CLONE_S = 600.0
PULL_S = 4 * 3600.0


class TartError(Exception):
    """A tart command failed; the message quotes the command and what tart said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        what = " ".join(self.argv[1:3])
        super().__init__(f"`tart {what}` failed with exit status {returncode}: {self.stderr}")

    @property
    def missing_or_stopped(self) -> bool:
        """tart said the VM does not exist or is not running."""
        return self.returncode == EXIT_STATE

    @property
    def running(self) -> bool:
        """``delete`` refused because the VM is running."""
        return self.returncode == 1 and "is running" in self.stderr


class VMInfo(nc.Record):
    """One row of ``tart list --format json``; ``disk_gb`` apparent, ``size_gb`` allocated."""

    source: str
    name: str
    disk_gb: int
    size_gb: int
    running: bool
    state: str


def user_home() -> Path:
    """This user's home from the password database (not ``$HOME``, which a caller may change)."""
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return Path(os.path.expanduser("~"))


def tart_home(configured: str) -> Path:
    """The tart home tart will use: ``TART_HOME``, else ``~/.tart``."""
    return Path(configured).expanduser() if configured else user_home() / ".tart"


def tool_env(configured_home: str) -> dict[str, str]:
    """The whole environment of a tart process: the core's fixed one, ``HOME``, tart's own
    ``TART_*`` variables of this process (registry credentials and the like) and
    ``TART_HOME`` when configured."""
    env = nc.host_env("HOME", "USER", "LOGNAME", "TMPDIR")
    env.update({k: v for k, v in os.environ.items() if k.startswith("TART_") and v})
    if configured_home:
        env["TART_HOME"] = configured_home
    return env


class Tart:
    """Runs tart subcommands; each method raises :class:`TartError` on a non-zero status."""

    def __init__(self, executable: str, env: Mapping[str, str]) -> None:
        self.executable = executable
        self.env = dict(env)

    def argv(self, *args: str) -> list[str]:
        """The full command line of ``tart ARGS``."""
        return [self.executable, *args]

    def call(
        self, *args: str, timeout: float = QUICK_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tart ARGS`` with no stdin, output captured, at most ``timeout`` seconds."""
        argv = self.argv(*args)
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=self.env,
            start_new_session=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise TartError(argv, proc.returncode, proc.stderr)
        return proc

    def version(self, timeout: float = 3.0) -> str:
        """``tart --version``."""
        return self.call("--version", timeout=timeout).stdout.strip()

    def local_vms(self) -> list[VMInfo]:
        """``tart list --source local --format json``: the local VMs (not the OCI cache)."""
        out = self.call("list", "--source", "local", "--format", "json").stdout
        try:
            rows = json.loads(out or "[]")
        except ValueError:
            raise TartError(self.argv("list"), 0, f"not JSON: {out[:200]!r}") from None
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
            if isinstance(row, dict)
        ]

    def images(self) -> list[str]:
        """Names of the local VMs and cached OCI images (``tart list --quiet``)."""
        return self.call("list", "--quiet").stdout.split()

    def clone(self, source: str, name: str) -> None:
        """``tart clone SOURCE NAME``; an OCI source not cached yet is pulled first.

        tart replaces an existing VM called NAME without a word: callers pick names that
        ``tart list`` does not show."""
        self.call("clone", source, name, timeout=PULL_S if "/" in source else LOCAL_CLONE_S)

    def set(self, name: str, *, cpus: int, ram_mb: int) -> None:
        """``tart set NAME --cpu N --memory MB``."""
        self.call("set", name, "--cpu", str(cpus), "--memory", str(ram_mb))

    def stop(self, name: str, *, timeout_s: int) -> None:
        """``tart stop NAME --timeout S``: a hard stop (SIGINT to ``tart run``), SIGKILL after S."""
        self.call("stop", name, "--timeout", str(timeout_s), timeout=timeout_s + QUICK_S)

    def delete(self, name: str) -> None:
        """``tart delete NAME``; tart refuses a running VM (exit 1)."""
        self.call("delete", name)

    def probe(self, name: str, *command: str, timeout: float = 30.0) -> tuple[int, str]:
        """``tart exec NAME COMMAND`` with no stdin; returns its exit status and stderr."""
        try:
            proc = self.call("exec", name, *command, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return 1, f"`tart exec` did not answer within {timeout:.0f} s"
        return proc.returncode, proc.stderr
