"""One VM's life: clone, size, boot until the guest agent answers, and always stop and delete.

A VM's ``tart run`` runs in a session of its own (a Ctrl-C in the terminal reaches the
runtime, which then stops the VM in order). The guest agent answers once
``tart exec NAME /bin/test -d WORKDIR`` succeeds: before that tart exits 2 (the VM
is not running yet) or 1 (``is the Tart Guest Agent running?``), or the share is not
mounted yet; each is retried until ``TART_BOOT_TIMEOUT``. macOS refuses a third
macOS VM (``The number of VMs exceeds the system limit``, exit 1), VMs we did not
start included: the boot then waits and retries instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nanoclaw_runtimes_core as nc

from . import owners
from .tartcli import AGENT_DOWN_TEXT, EXIT_STATE, SYSTEM_LIMIT_TEXT, Tart, TartError

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.locks import SlotPool

Notify = Callable[[str], None]
OUTPUT_TAIL = 4000
LIMIT_RETRY_S = 2.0
PREFIX = "nanoclaw-"


class VMError(Exception):
    """The VM could not be made ready (clone, boot or guest agent failed)."""


class LimitReached(VMError):
    """macOS refused to start another VM."""


class VMSpec(nc.Record):
    """How to make one VM: what to clone, its size, its shares, how long to wait."""

    base_image: str
    cpus: int
    ram_mb: int
    dir_args: tuple[str, ...]
    workdir: str
    boot_timeout_s: float
    stop_timeout_s: int


def fresh_name(stem: str, taken: set[str], records: owners.Records) -> str:
    """A VM name that neither ``tart list`` (``taken``) nor our records know: ``tart clone``
    silently replaces an existing VM of that name, so no name is ever reused."""
    name = f"{PREFIX}{stem}"
    while name in taken or records.exists(name):
        name = f"{PREFIX}{stem}-{os.urandom(3).hex()}"
    return name


class RunProcess:
    """The background ``tart run`` of one VM, its output kept (a tail, or in a file)."""

    def __init__(self, tart: Tart, name: str, dir_args: tuple[str, ...], log: Path | None) -> None:
        argv = tart.argv("run", name, "--no-graphics", "--no-audio", "--no-clipboard")
        for arg in dir_args:
            argv += ["--dir", arg]
        self._tail = b""
        self._log = log
        out = open(log, "ab") if log is not None else None  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=tart.env,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        self._reader: threading.Thread | None = None
        if log is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
                self._tail = (self._tail + chunk)[-OUTPUT_TAIL:]

    def output(self) -> str:
        """What ``tart run`` printed (its last few kilobytes)."""
        if self._reader is not None:
            self._reader.join(timeout=1)
            return self._tail.decode("utf-8", "replace")
        try:
            assert self._log is not None
            return self._log.read_bytes()[-OUTPUT_TAIL:].decode("utf-8", "replace")
        except OSError:
            return ""

    def ended(self) -> bool:
        return self.proc.poll() is not None

    def reap(self, grace_s: float) -> None:
        """Make sure ``tart run`` is gone: SIGINT (tart's own stop), then SIGKILL after grace."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=1)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_ready(tart: Tart, name: str, run: RunProcess, spec: VMSpec) -> float:
    """Wait until the guest agent answers and the workspace share is there; returns the
    seconds it took. Raises :class:`LimitReached` or :class:`VMError`."""
    started = time.monotonic()
    deadline = started + spec.boot_timeout_s
    delay, last = 0.1, ""
    while True:
        _check_run(name, run)
        remaining = deadline - time.monotonic()
        code, err = tart.probe(
            name, "/bin/test", "-d", spec.workdir, timeout=max(1.0, min(30.0, remaining))
        )
        if code == 0:
            return time.monotonic() - started
        if code not in (1, EXIT_STATE):
            raise VMError(f"`tart exec {name}` failed with exit status {code}: {err.strip()}")
        last = err.strip() if code == EXIT_STATE or AGENT_DOWN_TEXT in err else "share"
        _check_run(name, run)
        if time.monotonic() >= deadline:
            if last == "share":
                raise VMError(
                    f"the guest of VM {name} did not mount its workspace share {spec.workdir} "
                    f"within {spec.boot_timeout_s:.0f} s; is the base image a macOS guest?"
                )
            raise VMError(
                f"the guest agent of VM {name} did not answer within {spec.boot_timeout_s:.0f} s "
                f"({last or 'no answer'}); use a base image with the Tart Guest Agent (Cirrus "
                "Labs images have it) or raise TART_BOOT_TIMEOUT"
            )
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 1.0)  # a macOS boot takes 10-30 s: poll at most each second


def _check_run(name: str, run: RunProcess) -> None:
    if run.ended():
        output = run.output().strip()
        if SYSTEM_LIMIT_TEXT in output:
            raise LimitReached(output)
        raise VMError(
            f"VM {name} did not start: `tart run` ended with exit status "
            f"{run.proc.returncode}: {output or '(no output)'}"
        )


def remove_vm(tart: Tart, name: str, *, stop_timeout_s: int, stop: bool = True) -> None:
    """Stop (a hard stop) and delete ``name``; a VM already gone is not an error. tart frees a
    VM's lock a moment after ``tart run`` ends, so a delete refused as running is retried."""
    if stop:
        with contextlib.suppress(TartError):
            tart.stop(name, timeout_s=stop_timeout_s)  # exit 2: not running, or missing
    for attempt in range(40):
        try:
            tart.delete(name)
            return
        except TartError as exc:
            if exc.missing_or_stopped:
                return
            if not exc.running or attempt == 39:
                raise
        time.sleep(0.25)


def remove_claimed(tart: Tart, records: owners.Records, name: str, *, stop_timeout_s: int) -> bool:
    """Stop and delete our VM ``name`` and its records while holding its claim lock, so no
    run takes a spare being deleted. False when a run holds the claim (nothing is done)."""
    fd = records.claim(name, attempts=3)
    if fd is None:
        return False
    try:
        remove_vm(tart, name, stop_timeout_s=stop_timeout_s)
        owners.remove_files(records.folder, name)
    finally:
        owners.release_fd(fd)
    return True


class Cleanup:
    """Runs cleanup steps to the end despite interruptions; failures become notices."""

    def __init__(self, notify: Notify) -> None:
        self.notify = notify
        self.interrupted: BaseException | None = None

    def step(self, what: str, fn: Callable[[], None]) -> bool:
        """Run ``fn``; a Ctrl-C or SIGTERM meanwhile is kept for later and the step retried."""
        for _ in range(5):
            try:
                fn()
                return True
            except Exception as exc:
                self.notify(f"{what} failed: {exc}; the next run, stats or reset retries it")
                return False
            except BaseException as exc:  # a second interruption: finish cleaning first
                self.interrupted = self.interrupted or exc
        return False

    def reraise(self) -> None:
        if self.interrupted is not None:
            raise self.interrupted


def boot(
    tart: Tart,
    name: str,
    spec: VMSpec,
    *,
    log: Path | None,
    on_started: Callable[[RunProcess], None],
    on_limit: Callable[[str], bool],
    limit_deadline: float,
) -> float:
    """Start ``tart run`` and wait until the guest is ready; returns the seconds it took.

    When macOS refuses the VM, ``on_limit(message)`` is called (it may free room, e.g. by
    deleting our spare VM; returning False gives up) and the boot is retried every few
    seconds until ``limit_deadline`` (monotonic)."""
    while True:
        run = RunProcess(tart, name, spec.dir_args, log)
        on_started(run)
        try:
            return wait_ready(tart, name, run, spec)
        except LimitReached as exc:
            run.reap(1.0)
            if not on_limit(str(exc)) or time.monotonic() >= limit_deadline:
                raise LimitReached(
                    f"VM {name} could not start: macOS keeps refusing another VM ({exc}); stop "
                    "VMs you do not need (`tart list`, `tart stop NAME`)"
                ) from None
            time.sleep(LIMIT_RETRY_S)


def acquire_slot(
    pool: SlotPool, *, notify: Notify, evict: Callable[[], bool], deadline: float
) -> nc.FileLock:
    """One of the machine-wide VM slots, waiting (with one notice) while all are taken; a
    spare VM of ours in the way is deleted first."""
    told = False
    quiet_until = 0.0
    while (lock := pool.try_acquire()) is None:
        if evict():
            quiet_until = time.monotonic() + 3.0  # the spare's reaper lets go of its slot
            continue
        if not told and time.monotonic() >= quiet_until:
            notify(
                f"waiting for a VM slot: {pool.size} tart VM(s) of nanoclaw-runtimes are "
                f"running on this machine (TART_MAX_RUNNING={pool.size})"
            )
            told = True
        if time.monotonic() >= deadline:
            raise VMError(f"no VM slot became free (TART_MAX_RUNNING={pool.size})")
        time.sleep(0.2)
    return lock


@contextlib.contextmanager
def ephemeral_vm(
    tart: Tart,
    spec: VMSpec,
    records: owners.Records,
    name: str,
    *,
    group: str,
    project: str,
    pool: SlotPool,
    notify: Notify,
    evict: Callable[[], bool],
    wait_s: float,
) -> Iterator[str]:
    """A fresh VM cloned from the base, booted and answering; yields its name. It is ours
    (recorded, owner-locked) before it exists and until it is deleted, however the block
    ends."""
    owned = records.create(name, kind="run", group=group, project=project)
    runs: list[RunProcess] = []
    cleanup = Cleanup(notify)
    slot: nc.FileLock | None = None
    deleted = False
    deadline = time.monotonic() + wait_s
    try:
        try:
            tart.clone(spec.base_image, name)
            owned.update(phase="created")
            tart.set(name, cpus=spec.cpus, ram_mb=spec.ram_mb)
            slot = acquire_slot(pool, notify=notify, evict=evict, deadline=deadline)
            told: list[str] = []

            def on_limit(message: str) -> bool:
                if evict():
                    return True
                if not told:
                    notify(
                        "macOS refuses to start another VM (its limit counts VMs that "
                        f"nanoclaw-runtimes did not start too); waiting for one to stop: {message}"
                    )
                    told.append(message)
                return True

            boot(
                tart,
                name,
                spec,
                log=None,
                on_started=runs.append,
                on_limit=on_limit,
                limit_deadline=deadline,
            )
        except TartError as exc:
            raise VMError(str(exc)) from None
        yield name
    finally:
        if runs and not runs[-1].ended():
            cleanup.step(
                f"stopping VM {name}",
                lambda: _stop_quietly(tart, name, spec.stop_timeout_s),
            )
        for run in runs:
            cleanup.step(f"ending `tart run {name}`", lambda r=run: r.reap(5.0))  # type: ignore[misc]
        deleted = cleanup.step(
            f"deleting VM {name}",
            lambda: remove_vm(
                tart,
                name,
                stop_timeout_s=spec.stop_timeout_s,
                stop=any(not r.ended() for r in runs),
            ),
        )
        if slot is not None:
            slot.release()
        owned.release(remove=deleted)
        cleanup.reraise()


def _stop_quietly(tart: Tart, name: str, timeout_s: int) -> None:
    try:
        tart.stop(name, timeout_s=timeout_s)
    except TartError as exc:
        if not exc.missing_or_stopped:
            raise
