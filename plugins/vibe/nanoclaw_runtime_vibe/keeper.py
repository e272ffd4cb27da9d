"""The host process that keeps one vibe VM: ``python -m nanoclaw_runtime_vibe.keeper FOLDER``.

Started (as the VM's user) by the first run that boots a disk, it outlives that run so the
VM stays warm, and it bounds everything vibe itself does not:

- it starts vibe with the VM's locks inherited (the disk lock and the folder's owner lock
  stay held as long as vibe or the keeper lives) and drains vibe's console, so the guest
  never stalls on a full console, keeping its tail for error messages;
- a script vibe refuses or cannot read makes vibe sit at the guest prompt forever: the
  keeper sees vibe's message and kills it; so it does for a guest that is not ready in
  time, stops its heartbeat, or outlives its idle deadline (it should power itself off);
- a run whose host process died (SIGKILL) is cancelled in the guest and its request,
  which may hold secrets, is removed within a fraction of a second;
- when vibe ends it writes ``exit.json`` (why) and removes everything else of the VM:
  the shares' content, vibe's TMPDIR with its EFI variable store, the console.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc

from . import rundir

CONSOLE_TAIL = 64 * 1024
CONSOLE_LOG_CAP = 16 * 2**20
PERIOD_S = 0.1
REFUSALS = (b"Failed to read script", b"cannot safely upload")
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\r")


def clean(data: bytes) -> str:
    """Console bytes as plain text (no terminal codes, no carriage returns)."""
    return _ANSI.sub(b"", data).decode("utf-8", "replace")


class Keeper:
    def __init__(self, folder: Path) -> None:
        self.vm = rundir.VmFolder(folder)
        self.launch: dict[str, Any] = json.loads((folder / rundir.LAUNCH).read_text())
        self.console = bytearray()
        self.stderr = bytearray()
        self.lock = threading.Lock()
        self.refused = False
        self.reason: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.console_log = open(folder / "console.log", "ab") if self.launch.get("debug") else None  # noqa: SIM115
        self.dead_runs: dict[str, float] = {}

    # ------------------------------------------------------------------ output

    def _pump(self, stream: Any, keep: bytearray, *, console: bool) -> None:
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                keep += chunk
                if len(keep) > CONSOLE_TAIL:
                    del keep[: len(keep) - CONSOLE_TAIL]
                if not console and any(r in keep for r in REFUSALS):
                    self.refused = True
            if console and self.console_log is not None:
                with contextlib.suppress(OSError):
                    if self.console_log.tell() > CONSOLE_LOG_CAP:
                        self.console_log.truncate(0)
                        self.console_log.seek(0)
                    self.console_log.write(chunk)
                    self.console_log.flush()

    # ------------------------------------------------------------------ checks

    def _owner(self) -> tuple[int, int] | None:
        user = self.launch.get("user")
        return (int(user[0]), int(user[1])) if user else None

    def _as_vm_user(self) -> dict[str, Any]:
        """Popen arguments that run a command as the VM's user (when it is not ours)."""
        owner = self._owner()
        if owner is None:
            return {}
        return {"user": owner[0], "group": owner[1], "extra_groups": []}

    def _check_needs(self) -> str | None:
        """Why the VM's user cannot reach a path vibe needs, or None (checked as that user:
        vibe itself would only say it does not exist)."""
        needs = self.launch.get("needs", [])
        for path, what in needs:
            if not os.path.exists(path):
                return f"{what} {path} does not exist"
        owner = self._owner()
        if owner is None:
            return None
        probe = subprocess.run(
            ["sh", "-c", 'for p; do test -e "$p" || { printf %s "$p"; exit 1; }; done', "sh"]
            + [path for path, _ in needs],
            env=dict(nc.HOST_ENV),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            **self._as_vm_user(),
        )
        if probe.returncode == 0:
            return None
        missing = probe.stdout.decode("utf-8", "replace")
        what = next((w for p, w in needs if p == missing), "a path it needs")
        return (
            f"the VM runs as uid {owner[0]} (NANOCLAW_SANDBOX_USER), which cannot reach {what} "
            f"{missing}: let that user traverse its folders (chmod o+x), or run "
            "nanoclaw-runtimes as an ordinary user"
        )

    def _idle_until(self) -> float | None:
        record = self.vm.record()
        value = record.get("idle_until") if record else None
        return float(value) if isinstance(value, (int, float)) else None

    def _sweep_runs(self) -> bool:
        """Cancel the runs whose host process died; returns whether a run is followed."""
        owners = self.vm.path / "owners"
        busy = False
        with contextlib.suppress(OSError), os.scandir(owners) as entries:
            for entry in list(entries):
                name = entry.name
                if nc.owner_alive(Path(entry.path)):
                    busy = True
                    continue
                self.vm.share.remove("req", name)  # never taken: its secrets go now
                with contextlib.suppress(OSError):
                    self.vm.share.touch("cancel", name, owner=self._owner())
                self.dead_runs.setdefault(name, time.monotonic())
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        now = time.monotonic()
        for name, since in list(self.dead_runs.items()):
            if self.vm.share.exists("out", name, "status") or now - since > 60:
                self.vm.share.remove("out", name)
                self.vm.share.remove("cancel", name)
                del self.dead_runs[name]
        return busy

    def _why_kill(self, started: float, ready: bool, busy: bool) -> str | None:
        launch = self.launch
        if self.refused:
            with self.lock:
                text = clean(bytes(self.stderr)).strip()
            return f"vibe did not run the script it was given ({text}); it would have hung"
        if not ready:
            failed = self.vm.share.read_small("failed")
            if failed is not None:
                return "the guest could not start: " + failed.decode("utf-8", "replace").strip()
            if time.monotonic() - started > float(launch["boot_timeout_s"]):
                return f"the guest was not ready within {launch['boot_timeout_s']} s"
            return None
        age = self.vm.heartbeat_age()
        if age is not None and age > float(launch["hung_s"]):
            return f"the guest stopped answering (no heartbeat for {age:.0f} s)"
        idle_until = self._idle_until()
        if not busy and idle_until is not None:
            late = time.time() - idle_until
            if late > float(launch["idle_grace_s"]):
                return (
                    f"the guest did not power off at the end of its idle time ({late:.0f} s late)"
                )
        return None

    # ------------------------------------------------------------------ life

    def run(self) -> int:
        launch = self.launch
        fds = [int(fd) for fd in launch["fds"]]
        problem = self._check_needs()
        if problem is not None:
            self._finish(None, problem, ready=False)
            return 0
        prefix = ["setpriv", "--pdeathsig=KILL", "--"] if sys.platform.startswith("linux") else []
        try:
            self.proc = subprocess.Popen(
                [*prefix, *launch["argv"]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=launch["env"],
                cwd=self.vm.path,
                pass_fds=fds,
                start_new_session=True,
                **self._as_vm_user(),
            )
        except OSError as exc:
            self._finish(None, f"vibe could not be started: {exc}", ready=False)
            return 0
        self.vm.write_json("pids.json", {"keeper": os.getpid(), "vibe": self.proc.pid})
        pumps = [
            threading.Thread(
                target=self._pump,
                args=(self.proc.stdout, self.console),
                kwargs={"console": True},
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(self.proc.stderr, self.stderr),
                kwargs={"console": False},
                daemon=True,
            ),
        ]
        for t in pumps:
            t.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        started = time.monotonic()
        ready = False
        while self.proc.poll() is None:
            ready = ready or self.vm.share.exists("ready")
            busy = self._sweep_runs()
            reason = "asked to stop" if stop.is_set() else self._why_kill(started, ready, busy)
            if reason is not None:
                self.reason = reason
                self._kill()
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=PERIOD_S)
        self.proc.wait()
        for t in pumps:
            t.join(timeout=2)
        self._finish(self.proc.returncode, self.reason, ready=ready)
        return 0

    def _kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _finish(self, code: int | None, reason: str | None, *, ready: bool) -> None:
        with self.lock:
            console, stderr = bytes(self.console), bytes(self.stderr)
        info = {
            "code": code,
            "reason": reason,
            "ready": ready,
            "stdout_tail": clean(console[-4000:]),
            "stderr_tail": clean(stderr[-4000:]),
            "ended": time.time(),
        }
        with contextlib.suppress(OSError):
            self.vm.write_json(rundir.EXIT, info)
        if self.console_log is not None:
            self.console_log.close()
        # A guest that powers off right after a run (no keep-warm time) may do so before the
        # host has read the run's output: a run whose host process still follows it keeps its
        # out/<run>; that process removes it, and the whole folder, when it is done.
        followed = self._followed_runs()
        keep: dict[str, rundir.Keep] = {rundir.OWNER: {}, rundir.EXIT: {}}
        if followed:
            keep["ctl"] = {"out": {name: {} for name in followed}}
        rundir.clear_folder(self.vm.path, keep)

    def _followed_runs(self) -> set[str]:
        """The runs whose host process is alive."""
        with contextlib.suppress(OSError), os.scandir(self.vm.path / "owners") as entries:
            return {e.name for e in entries if nc.owner_alive(Path(e.path))}
        return set()


def main(argv: list[str]) -> int:
    """Keep the VM of the folder ``argv[0]`` until vibe ends."""
    os.umask(0o077)
    keeper = Keeper(Path(argv[0]))
    try:
        return keeper.run()
    except BaseException as exc:
        if keeper.proc is not None:
            keeper._kill()
        keeper._finish(None, f"the VM's keeper failed: {type(exc).__name__}: {exc}", ready=False)
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
