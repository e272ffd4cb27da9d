"""The vibe engine: a group's disk booted by the real vibe CLI (macOS, Virtualization.framework).

vibe offers two ways in: the console, into which it types ``--script`` files, and
virtio-fs shares. It has no exec channel, no stdin for the guest and no exit status
(it exits 0 whenever the guest stops). So:

- vibe is started as ``vibe --no-default-mounts --cpus N --ram M --network MODE --mount …
  --script FILE -- DISK`` (never its default mounts: they would hand the host's
  ``~/.claude``, ``~/.codex``… to every group). Every ``--mount`` is a safely named link of
  ours (``m/0``, ``m/1``…) to the real folder, shared at ``/nanoclaw/m/<i>``: vibe types a
  share's guest path and host basename unquoted into the guest shell and tags shares by
  basename and hash, so a user's path never reaches vibe. The guest binds each share to
  its container path itself, quoted, from a file.
- The typed script starts the guest loop (:mod:`.script`), which serves run requests
  dropped into the control share. The agent's stdout, stderr and exit status come back
  as three files the host follows as they grow: lossless, separate, and nothing the
  agent prints on the console can forge them.
- The VM is kept by a host process (:mod:`.keeper`) that holds its locks, drains its
  console and bounds its life; it stays warm for ``keepWarm`` ms after a run, the next
  run of the group reusing it when nothing that shapes the VM changed.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import images, rundir, script
from .engines import BaseBuild, RunSpec, WarmVm, find_vibe

if TYPE_CHECKING:
    from .settings import VibeSettings

INSTALL_FIX = (
    "install vibe (https://github.com/lynaghk/vibe, macOS on Apple silicon) and put it on "
    "PATH or set VIBE_EXECUTABLE to its path; on Linux set VIBE_ENGINE=qemu"
)
BOOT_TIMEOUT_S = 300.0
"""Longest a boot may take (vibe itself waits up to 120 s for the login prompt)."""
ACCEPT_S = 15.0
HUNG_S = 30.0
IDLE_GRACE_S = 30.0
STOP_WAIT_S = 20.0
CANCEL_WAIT_S = 10.0
INTERRUPT_WAIT_S = 5.0
LOCK_WAIT_S = 10.0
POLL_MIN_S, POLL_MAX_S = 0.003, 0.03
MAX_FILE_MOUNT = 64 * 2**20
BUILD_TIMEOUT_MS = 2 * 3600 * 1000


# --------------------------------------------------------------------------- output


class _Follow:
    """One growing file of the share, read from where it was left."""

    def __init__(
        self, share: rundir.Share, parts: tuple[str, ...], handle: Callable[[bytes], None]
    ) -> None:
        self.share, self.parts, self.handle = share, parts, handle
        self.fd: int | None = None

    def pump(self, budget: int = 8 * 2**20) -> int:
        if self.fd is None:
            self.fd = self.share.open_file(*self.parts)
            if self.fd is None:
                return 0
        got = 0
        while got < budget:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            got += len(chunk)
            self.handle(chunk)
        return got

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _ConsoleTail:
    """With ``VIBE_DEBUG``: the VM's console copied to this process's stderr."""

    def __init__(self, vm: rundir.VmFolder, enabled: bool) -> None:
        self.path = vm.path / "console.log"
        self.enabled = enabled
        self.offset = 0

    def pump(self) -> None:
        if not self.enabled:
            return
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size < self.offset:
                    self.offset = 0
                data = os.pread(fd, 1 << 20, self.offset)
            finally:
                os.close(fd)
            if data:
                self.offset += len(data)
                sys.stderr.buffer.write(data)
                sys.stderr.buffer.flush()


class _NotTaken(nc.Record, kw_only=False):
    """A warm VM that did not take a run (it was powering off, or died)."""

    reason: str


# --------------------------------------------------------------------------- helpers


def vm_failure(info: Mapping[str, Any] | None, *, what: str = "the vibe VM") -> str:
    """What a VM's ``exit.json`` says about why it ended, for an error message."""
    if info is None:
        return f"{what} ended without saying why"
    parts = []
    if info.get("reason"):
        parts.append(str(info["reason"]))
    code = info.get("code")
    if code not in (None, 0):
        kind = (
            {1: "an error", 101: "a panic"}.get(code, "a failure")
            if isinstance(code, int)
            else "a failure"
        )
        parts.append(f"vibe exited with status {code} ({kind})")
    elif code == 0 and not info.get("reason"):
        parts.append("the guest powered off")
    for key, label in (("stderr_tail", "vibe said"), ("stdout_tail", "vibe's output")):
        text = str(info.get(key) or "").strip()
        if text:
            lines = [ln for ln in text.splitlines() if ln.strip()][-12:]
            parts.append(f"{label}:\n  " + "\n  ".join(lines))
    return f"{what} stopped: " + "; ".join(parts)


def _pid_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _claim(path: Path) -> int:
    """An owner lock on ``path`` held by this process until the descriptor is closed (the
    keeper cancels a run whose lock is free: its follower died)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    nc.lock_fd(fd, wait_s=0)  # created just now (O_EXCL): always free
    return fd


def _is_keeper(pid: int) -> bool:
    """Whether ``pid`` is a VM keeper (a recorded pid may since have been reused)."""
    marker = b"nanoclaw_runtime_vibe.keeper"
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return False
    except OSError:
        return False
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, timeout=3
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return marker in out


def _memory_mb(pgid: int) -> float:
    """Resident memory of a process group (vibe and what it started), in MB."""
    if sys.platform.startswith("linux"):
        total = 0
        with contextlib.suppress(OSError), os.scandir("/proc") as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == pgid:
                        total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    continue
        return total / 2**20
    try:
        out = subprocess.run(
            ["ps", "-o", "rss=", "-g", str(pgid)], capture_output=True, text=True, timeout=3
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0.0
    return sum(int(x) for x in out.split() if x.isdigit()) / 1024


def _read_host_file(path: Path, limit: int, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise nc.UserError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise nc.UserError(f"{what} {path} must be a regular file of at most {limit} bytes")
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def _lock_fd(fd: int, what: Path, wait_s: float) -> None:
    if not nc.lock_fd(fd, wait_s=wait_s):
        raise nc.UserError(
            f"{what} is in use by another VM (another engine or tool is booting it); "
            "stop that VM first: two VMs writing one disk would corrupt it"
        )


# --------------------------------------------------------------------------- the engine


class VibeEngine:
    """Boots group disks with the vibe CLI and keeps them warm."""

    name = "vibe"

    # ------------------------------------------------------------------ status

    def executable(self, settings: VibeSettings) -> str:
        """The vibe executable, or :class:`nc.EngineUnavailable` saying how to install it."""
        exe = find_vibe(settings)
        if exe is None:
            raise nc.EngineUnavailable(
                f"vibe executable {settings.executable!r} (VIBE_EXECUTABLE) not found: "
                + INSTALL_FIX
            )
        return exe

    def status(self, settings: VibeSettings) -> nc.EngineStatus:
        """Whether vibe is installed, and its version (``vibe --version``, bounded to 5 s)."""
        exe = find_vibe(settings)
        if exe is None:
            return nc.EngineStatus(
                available=False,
                engine="vibe",
                detail=f"{settings.executable!r} not found on PATH",
                fix=INSTALL_FIX,
            )
        lines = [
            ln.strip() for ln in nc.run_tool([exe, "--version"], timeout_s=5).stdout.splitlines()
        ]
        lines = [ln for ln in lines if ln]
        sha = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Git SHA")), None)
        version = sha or (lines[0] if lines else None)
        return nc.EngineStatus(
            available=True,
            engine="vibe",
            version=version,
            detail=(
                f"{exe}; warm VMs kept for keepWarm ms; the guest always has a network (vibe "
                "cannot turn it off; with network false the agent's own namespace has none); "
                "masks are applied in the guest, which the group's own disk could subvert"
            ),
            isolation=frozenset({nc.ISOLATION_FILESYSTEM, nc.ISOLATION_PID}),
        )

    # ------------------------------------------------------------------ runs

    def run(
        self, spec: RunSpec, *, settings: VibeSettings, sink: nc.OutputSink
    ) -> nc.ExecutionResult:
        """See :meth:`nanoclaw_runtime_vibe.engines.Engine.run`."""
        exe = self.executable(settings)
        owner = rundir.vm_user_ids(spec.user)
        vm = rundir.VmFolder.for_disk(spec.disk, spec.user)
        rundir.sweep_area(vm.path.parent)
        boot = self._description(spec, settings)
        files = self._request_files(spec)
        warm = self._usable(vm, spec, boot, sink)
        started = time.monotonic()
        console = _ConsoleTail(vm, spec.debug)
        outcome: nc.ExecutionResult | _NotTaken = _NotTaken("not started")
        for _attempt in range(2):
            if not warm:
                self._boot(vm, spec, settings, exe, boot, owner, console)
            outcome = self._execute(vm, spec, files, owner, sink, console, started)
            if isinstance(outcome, nc.ExecutionResult):
                break
            if not warm:
                self._stop(vm)
                raise nc.EngineUnavailable(
                    f"the freshly booted vibe VM did not take the run: {outcome.reason}"
                )
            sink.on_problem(
                f"vibe: the warm VM of group {spec.group.folder!r} did not take the run "
                f"({outcome.reason}); booting a fresh one"
            )
            self._stop(vm)
            warm = False
        assert isinstance(outcome, nc.ExecutionResult)
        self._after(vm, spec)
        return outcome

    def _description(self, spec: RunSpec, settings: VibeSettings) -> dict[str, Any]:
        """What the VM of ``spec`` is made of, to say what changed when it cannot be reused."""
        return {
            "cpus": spec.cpus,
            "ramMB": spec.ram_mb,
            "vibeNetwork": settings.vibe_network,
            "executable": settings.executable,
            "debug": spec.debug,
            "mounts": [[str(m.host_path), m.container_path, m.readonly] for m in spec.mounts],
            "masks": [[m.container_path, m.folder] for m in spec.masks],
            "user": [spec.user.uid, spec.user.gid],
        }

    def _usable(
        self, vm: rundir.VmFolder, spec: RunSpec, boot: Mapping[str, Any], sink: nc.OutputSink
    ) -> bool:
        """Whether the disk's warm VM can take this run; one that cannot is powered off."""
        if not vm.alive():
            vm.remove()
            return False
        record = vm.record() or {}
        why: str | None = None
        if record.get("boot_key") != spec.boot_key:
            why = images.describe_change(record.get("boot") or {}, boot)
            if why == "its configuration changed" and record.get("boot") == dict(boot):
                why = "its base, disk or engine settings changed"
        elif vm.share.exists("closing"):
            self._stop(vm)  # its idle time just ended: no news, boot a fresh one
            return False
        elif not vm.share.exists("ready"):
            why = "it never became ready"
        else:
            age = vm.heartbeat_age()
            if age is not None and age > HUNG_S / 3:
                why = f"it stopped answering ({age:.0f} s without a heartbeat)"
        if why is None:
            return True
        sink.on_problem(
            f"vibe: powering off the warm VM of group {spec.group.folder!r} ({why}); booting a "
            "fresh one"
        )
        if "stopped answering" in why:
            self._kill(vm)  # it would not hear a power-off request
            vm.remove()
        else:
            self._stop(vm)
        return False

    def _open_disk(self, disk: Path, owner: tuple[int, int] | None) -> int:
        try:
            fd = os.open(disk, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise nc.UserError(
                    f"{disk} is a symbolic link; a group's disk must be its own file"
                ) from None
            raise nc.UserError(
                f"the group's disk {disk} cannot be opened: {exc.strerror}"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise nc.UserError(f"{disk} must be a regular file with no other hard links")
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)  # vibe runs as the sandbox user: the disk is its to write
        return fd

    def _boot(
        self,
        vm: rundir.VmFolder,
        spec: RunSpec,
        settings: VibeSettings,
        exe: str,
        boot: Mapping[str, Any],
        owner: tuple[int, int] | None,
        console: _ConsoleTail,
    ) -> None:
        """Start a fresh VM for ``spec`` (its keeper, then vibe) and wait until its loop runs."""
        if vm.alive():
            self._stop(vm)
        vm.remove()
        fds: list[int] = []
        try:
            disk_fd = self._open_disk(spec.disk, owner)
            fds.append(disk_fd)
            _lock_fd(disk_fd, spec.disk, LOCK_WAIT_S)
            lock_path = images.disk_lock_path(spec.disk)
            lock_fd = os.open(
                lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            fds.append(lock_fd)
            _lock_fd(lock_fd, spec.disk, LOCK_WAIT_S)
            _made, owner_fd = rundir.create(vm.path, shared=owner is not None)
            fds.append(owner_fd)
            argv, needs = self._populate(vm, spec, settings, exe, owner)
            keeper = self._spawn_keeper(vm, spec, argv, needs, fds, owner)
            vm.write_json(
                rundir.RECORD,
                {
                    "group": spec.group.folder,
                    "project": str(spec.project.root),
                    "disk": str(spec.disk),
                    "engine": self.name,
                    "boot_key": spec.boot_key,
                    "boot": dict(boot),
                    "started": time.time(),
                    "idle_until": time.time() + script.BOOT_IDLE_S,
                    "keeper_pid": keeper,
                    "user": [spec.user.uid, spec.user.gid],
                    "cpus": spec.cpus,
                    "ram_mb": spec.ram_mb,
                },
            )
        finally:
            for fd in fds:
                os.close(fd)
        deadline = time.monotonic() + BOOT_TIMEOUT_S + 15
        try:
            while not vm.share.exists("ready"):
                console.pump()
                if not vm.alive():
                    info = vm.exit_info()
                    vm.remove()
                    raise nc.EngineUnavailable(
                        vm_failure(info, what=f"the vibe VM of group {spec.group.folder!r}")
                    )
                if time.monotonic() > deadline:
                    raise nc.EngineUnavailable(
                        f"the vibe VM of group {spec.group.folder!r} did not boot within "
                        f"{BOOT_TIMEOUT_S:.0f} s"
                    )
                time.sleep(0.01)
        except BaseException:
            self._kill(vm)  # interrupted or failed while booting: nothing is left running
            vm.remove()
            raise

    def _populate(
        self,
        vm: rundir.VmFolder,
        spec: RunSpec,
        settings: VibeSettings,
        exe: str,
        owner: tuple[int, int] | None,
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Write the VM folder: boot share, control share, mount links, script; returns vibe's
        argv and the paths the VM's user must reach."""
        boot: dict[str, bytes] = {
            "loop.sh": script.LOOP.encode(),
            "run.sh": script.RUN.encode(),
            "example_agent.py": nc.example_agent_file().read_bytes(),
        }
        if spec.debug:
            boot["debug"] = b""
        folder_mounts = [m for m in spec.mounts if not m.is_file]
        needs: list[tuple[str, str]] = [
            (exe, "the vibe executable"),
            (str(spec.disk), "the group's disk"),
        ]
        for i, mount in enumerate(folder_mounts):
            boot[f"mounts/{i}/path"] = mount.container_path.encode()
            boot[f"mounts/{i}/mode"] = b"ro" if mount.readonly else b"rw"
            needs.append((str(mount.host_path), f"the folder mounted at {mount.container_path}"))
        # vibe (the VM's user) writes ctl/, tmp/ and home/ only; it reads the rest
        readable = 0o755 if owner is not None else 0o700
        top = os.open(vm.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            rundir.write_tree(top, "boot", boot, owner=None, mode=readable)
            for sub in ("ctl", "tmp", "home"):
                os.close(rundir.mkdir_at(top, sub, owner=owner))
            os.close(rundir.mkdir_at(top, "owners", owner=None))
            os.close(rundir.mkdir_at(top, "m", owner=None, mode=readable))
            rundir.write_file_at(
                top, rundir.SCRIPT, script.TYPED.encode(), mode=readable & 0o644, owner=None
            )
            links = os.open(
                "m", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top
            )
            try:
                for i, mount in enumerate(folder_mounts):
                    os.symlink(str(mount.host_path), str(i), dir_fd=links)
            finally:
                os.close(links)
        finally:
            os.close(top)
        v = vm.path
        argv = [
            exe,
            "--no-default-mounts",
            "--cpus",
            str(spec.cpus),
            "--ram",
            str(spec.ram_mb),
            "--network",
            settings.vibe_network,
            "--mount",
            f"{v}/boot:{script.BOOT}:read-only",
            "--mount",
            f"{v}/ctl:{script.CTL}:read-write",
        ]
        for i, mount in enumerate(folder_mounts):
            argv += [
                "--mount",
                f"{v}/m/{i}:{script.ALIASES}/{i}:{'read-only' if mount.readonly else 'read-write'}",
            ]
        argv += ["--script", f"{v}/{rundir.SCRIPT}", "--", str(spec.disk)]
        return argv, needs

    def _spawn_keeper(
        self,
        vm: rundir.VmFolder,
        spec: RunSpec,
        argv: list[str],
        needs: list[tuple[str, str]],
        fds: list[int],
        owner: tuple[int, int] | None,
    ) -> int:
        v = vm.path
        env = {
            **nc.HOST_ENV,
            "HOME": f"{v}/home",
            "TMPDIR": f"{v}/tmp/",
            "XDG_CACHE_HOME": f"{v}/home/.cache",
        }
        vm.write_json(
            rundir.LAUNCH,
            {
                "argv": argv,
                "env": env,
                "fds": fds,
                "needs": needs,
                "boot_timeout_s": BOOT_TIMEOUT_S,
                "hung_s": HUNG_S,
                "idle_grace_s": IDLE_GRACE_S,
                "debug": spec.debug,
                "user": list(owner) if owner is not None else None,
            },
        )
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "nanoclaw_runtime_vibe.keeper", str(v)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=v,
            env=dict(nc.HOST_ENV),
            pass_fds=fds,
            start_new_session=True,
        )
        import threading

        threading.Thread(target=proc.wait, daemon=True).start()  # reap it if it ends first
        return proc.pid

    def _request_files(self, spec: RunSpec) -> dict[str, bytes]:
        """The files of one run request (see :mod:`.script`): what, with what, where."""
        words = spec.command if spec.command is not None else spec.agent
        files: dict[str, bytes] = {
            "keep": f"{math.ceil(spec.keep_warm_ms / 1000)}\n".encode(),
            "env": script.env_file(spec.env),
        }
        for i, word in enumerate(script.argv_files(words)):
            files[f"argv/{i}"] = word
        if spec.input is not None:
            files["input"] = spec.input
        if not spec.network:
            files["no-network"] = b""
        for j, mask in enumerate(spec.masks):
            files[f"masks/{j}/path"] = mask.container_path.encode()
            if mask.folder:
                files[f"masks/{j}/folder"] = b""
            elif mask.source is not None:
                files[f"masks/{j}/source"] = _read_host_file(
                    mask.source, MAX_FILE_MOUNT, "the mask source"
                )
        for j, mount in enumerate(m for m in spec.mounts if m.is_file):
            if not mount.readonly:
                raise nc.UserError(
                    f"vibe can share folders only: the read-write file mount {mount.host_path} -> "
                    f"{mount.container_path} cannot be given to the VM; mount its folder instead"
                )
            files[f"files/{j}/path"] = mount.container_path.encode()
            files[f"files/{j}/source"] = _read_host_file(
                mount.host_path, MAX_FILE_MOUNT, "the file mount"
            )
        return files

    def _execute(
        self,
        vm: rundir.VmFolder,
        spec: RunSpec,
        files: Mapping[str, bytes],
        owner: tuple[int, int] | None,
        sink: nc.OutputSink,
        console: _ConsoleTail,
        started: float,
    ) -> nc.ExecutionResult | _NotTaken:
        """Hand the run to the VM and follow it to its end."""
        name = spec.run_name
        owner_path = vm.path / "owners" / name
        claim = _claim(owner_path)
        try:
            vm.share.submit(name, files, owner=owner)
            deadline = time.monotonic() + ACCEPT_S
            while not vm.share.exists("out", name, "accepted"):
                console.pump()
                reason = None
                if not vm.alive():
                    reason = vm_failure(vm.exit_info())
                elif vm.share.exists("closing"):
                    reason = "it was powering off at the end of its idle time"
                elif time.monotonic() > deadline:
                    reason = f"it did not answer within {ACCEPT_S:.0f} s"
                if reason is not None:
                    return _NotTaken(reason)
                time.sleep(0.005)
            return self._follow(vm, spec, sink, owner, console, started)
        finally:
            vm.share.remove("req", name)
            vm.share.remove("out", name)
            vm.share.remove("cancel", name)
            with contextlib.suppress(OSError):
                owner_path.unlink()
            os.close(claim)

    def _follow(
        self,
        vm: rundir.VmFolder,
        spec: RunSpec,
        sink: nc.OutputSink,
        owner: tuple[int, int] | None,
        console: _ConsoleTail,
        started: float,
    ) -> nc.ExecutionResult:
        name = spec.run_name
        out = nc.RunOutput(sink, agent_mode=spec.input is not None)
        streams = [
            _Follow(vm.share, ("out", name, "stdout"), out.on_stdout),
            _Follow(vm.share, ("out", name, "stderr"), out.on_stderr),
        ]

        def pump() -> int:
            return sum(s.pump() for s in streams)

        timeout_s = spec.timeout_ms / 1000
        idle_from = out.last_activity
        deadline = time.monotonic() + timeout_s
        timed_out = False
        cancel_deadline = 0.0
        status: int | None = None
        error: str | None = None
        next_check = 0.0
        seen_dead = False
        poll = POLL_MIN_S
        try:
            while True:
                got = pump()
                if out.last_activity != idle_from:
                    idle_from = out.last_activity
                    deadline = idle_from + timeout_s
                raw = vm.share.read_small("out", name, "status", limit=64)
                if raw is not None:
                    pump()
                    try:
                        status = int(raw.decode().strip())
                    except ValueError:
                        error = (
                            f"the guest reported an exit status that is not a number: {raw[:20]!r}"
                        )
                    break
                now = time.monotonic()
                if not timed_out and now > deadline:
                    timed_out = True
                    with contextlib.suppress(OSError):
                        vm.share.touch("cancel", name, owner=owner)
                    cancel_deadline = now + CANCEL_WAIT_S
                if timed_out and now > cancel_deadline:
                    self._kill(vm)
                    break
                if now >= next_check:
                    next_check = now + 0.25
                    console.pump()
                    if not vm.alive():
                        if not seen_dead:  # once more: a status written just before it ended
                            seen_dead = True
                            continue
                        pump()
                        error = vm_failure(vm.exit_info(), what="the vibe VM") + " during the run"
                        break
                    age = vm.heartbeat_age()
                    if age is not None and age > HUNG_S:
                        self._kill(vm)
                        error = (
                            "the vibe VM stopped answering during the run "
                            f"({age:.0f} s without a heartbeat)"
                        )
                        break
                poll = POLL_MIN_S if got else min(POLL_MAX_S, poll * 2)
                time.sleep(poll)
        except BaseException:
            with contextlib.suppress(Exception):
                vm.share.touch("cancel", name, owner=owner)
                end = time.monotonic() + INTERRUPT_WAIT_S
                while (
                    vm.alive()
                    and not vm.share.exists("out", name, "status")
                    and time.monotonic() < end
                ):
                    pump()
                    time.sleep(0.02)
            raise
        finally:
            for s in streams:
                s.close()
            out.close()
        return out.result(
            exit_code=None if timed_out else status,
            timed_out=timed_out,
            started=started,
            timeout_ms=spec.timeout_ms,
            error=None if timed_out else error,
        )

    def _after(self, vm: rundir.VmFolder, spec: RunSpec) -> None:
        """Keep the VM warm for ``keep_warm_ms``, or see it powered off."""
        if not vm.alive():
            vm.remove()
            return
        if spec.keep_warm_ms > 0:
            vm.update_record(idle_until=time.time() + spec.keep_warm_ms / 1000)
            return
        if not vm.wait_dead(STOP_WAIT_S):  # the guest powers off on its own
            self._kill(vm)
        vm.remove()

    # ------------------------------------------------------------------ stopping

    def _stop(self, vm: rundir.VmFolder) -> None:
        """Power the VM off (asked through the share), killing it if it does not go in time."""
        if vm.alive():
            user = (vm.record() or {}).get("user")
            owner: tuple[int, int] | None = None
            if os.geteuid() == 0 and isinstance(user, list) and len(user) == 2:
                owner = (int(user[0]), int(user[1]))
            with contextlib.suppress(OSError):
                vm.share.touch("poweroff", owner=owner)
            if not vm.wait_dead(STOP_WAIT_S):
                self._kill(vm)
        vm.remove()

    def _kill(self, vm: rundir.VmFolder) -> None:
        """End the VM now: its keeper (which kills vibe), then vibe itself if need be."""
        record = vm.record() or {}
        keeper = record.get("keeper_pid")
        if not (isinstance(keeper, int) and keeper > 1 and _is_keeper(keeper)):
            keeper = None
        if keeper is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(keeper, signal.SIGTERM)
            if vm.wait_dead(3):
                return
        vibe = vm.pids().get("vibe")
        user = record.get("user")
        expected = user[0] if isinstance(user, list) and user else os.getuid()
        if isinstance(vibe, int) and vibe > 1 and _pid_uid(vibe) in (None, expected):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(vibe, signal.SIGKILL)
        if keeper is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(keeper, signal.SIGKILL)
        vm.wait_dead(5)

    def _area(self) -> Path:
        return rundir.area(for_other_user=os.geteuid() == 0)

    def stop_warm(self, project: nc.Project, group: str, settings: VibeSettings) -> list[str]:
        """Power off the group's warm VM; one line when there was one."""
        disk = images.group_disk(project, settings, group)
        vm = rundir.VmFolder(self._area() / rundir.vm_name(disk))
        if not vm.alive():
            vm.remove()
            return []
        record = vm.record() or {}
        age = time.time() - float(record.get("started") or time.time())
        self._stop(vm)
        return [f"powered off the warm vibe VM of group {group!r} (booted {age:.0f} s ago)"]

    def warm_vms(self, project: nc.Project, settings: VibeSettings) -> list[WarmVm]:
        """The project's VMs kept booted; folders of VMs that ended are swept on the way."""
        area = self._area()
        rundir.sweep_area(area)
        found = []
        for vm in rundir.folders(area):
            record = vm.record()
            if not record or record.get("project") != str(project.root) or not vm.alive():
                continue
            vibe = vm.pids().get("vibe")
            if vm.exit_info() is not None or not isinstance(vibe, int) or not nc.pid_running(vibe):
                continue  # vibe has ended (or not started yet); its keeper is cleaning up
            found.append(
                WarmVm(
                    group=str(record.get("group")),
                    engine=self.name,
                    pid=vibe,
                    started=float(record.get("started") or 0),
                    idle_until=float(record.get("idle_until") or 0),
                    memory_mb=_memory_mb(vibe),
                    folder=vm.path,
                )
            )
        return found

    # ------------------------------------------------------------------ bases

    def build_base(self, build: BaseBuild, *, settings: VibeSettings) -> str:
        """Provision a base with vibe (see :mod:`.vibe_base`)."""
        from .vibe_base import build_base

        return build_base(self.executable(settings), build, settings=settings)
