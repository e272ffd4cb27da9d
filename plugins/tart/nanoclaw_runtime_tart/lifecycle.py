"""One throwaway VM: clone, size, boot, wait for its guest agent, and always stop and delete.

:func:`ephemeral_vm` is a context manager; leaving its ``with`` block in any
way (return, exception, KeyboardInterrupt, the SystemExit a SIGTERM handler
raises) stops the VM, reaps the ``tart run`` process and deletes the VM. A
second interruption during that cleanup does not cut it short: the step is
retried and the interruption re-raised once everything is gone.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from nanoclaw_runtimes_core.locks import SlotPool
from nanoclaw_runtimes_core.process import stop_process_group

from .settings import TartSettings
from .shares import Share
from .sweep import delete_vm
from .tartcli import SYSTEM_LIMIT_TEXT, Tart, TartError
from .vm import VMName, register, unregister

Notify = Callable[[str], None]

RUN_OUTPUT_TAIL = 4000
LIMIT_RETRY_S = 2.0

# Runs in the guest: wait for the share to be mounted (macOS automounts it shortly
# after boot), enter it, and become the command. Arguments arrive as "$@", so no
# user text is ever parsed by the shell.
GUEST_LAUNCHER = """\
d=$1; shift
n=0
while [ ! -d "$d" ]; do
  n=$((n + 1))
  if [ "$n" -gt 120 ]; then
    echo "nanoclaw: the shared folder $d did not appear in the guest" >&2
    exit 125
  fi
  sleep 0.5
done
cd -P "$d" || exit 125
exec "$@"
"""


class VMError(Exception):
    """The VM could not be made ready (boot failure, guest agent silent, clone failed)."""


class _RunEnded(Exception):
    def __init__(self, returncode: int, output: str) -> None:
        self.returncode = returncode
        self.output = output
        super().__init__(f"`tart run` ended with exit status {returncode}: {output.strip()}")


class RunProcess:
    """The background ``tart run`` of one VM, with the tail of what it printed."""

    def __init__(self, tart: Tart, name: str, shares: Sequence[Share]) -> None:
        argv = tart.argv("run", name, "--no-graphics", "--no-audio", "--no-clipboard")
        for share in shares:
            argv += ["--dir", share.dir_arg()]
        self.argv = argv
        self._tail = b""
        # Own session: a Ctrl-C in the terminal reaches us, not the VM, so cleanup runs
        # in order.
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.proc.stdout.read1(65536):
                self._tail = (self._tail + chunk)[-RUN_OUTPUT_TAIL:]

    def output(self) -> str:
        """What ``tart run`` printed (its last few kilobytes)."""
        self._reader.join(timeout=1)
        return self._tail.decode("utf-8", "replace")

    def ended(self) -> _RunEnded | None:
        """The run's end, if it has ended."""
        code = self.proc.poll()
        return None if code is None else _RunEnded(code, self.output())

    def reap(self, grace_s: float) -> None:
        """Make sure the ``tart run`` process is gone (SIGTERM, then SIGKILL after grace)."""
        stop_process_group(self.proc, stop=None, grace_s=grace_s)
        self._reader.join(timeout=1)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _wait_for_agent(
    tart: Tart, name: str, run: RunProcess, deadline: float, boot_timeout_ms: int
) -> None:
    delay = 0.1
    while True:
        if (end := run.ended()) is not None:
            raise end
        remaining = deadline - time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            if tart.exec_probe(name, "true", timeout=max(1.0, min(30.0, remaining))) == 0:
                return
        if (end := run.ended()) is not None:
            raise end
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise VMError(
                f"the guest agent of VM {name} did not answer within {boot_timeout_ms} ms; "
                f"check that the base image has the Tart Guest Agent (Cirrus Labs images do) "
                f"or raise TART_BOOT_TIMEOUT"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.25, 1.0)  # a macOS boot takes 10-30 s: poll at most each second


def boot(
    tart: Tart,
    name: str,
    shares: Sequence[Share],
    settings: TartSettings,
    *,
    notify: Notify,
    limit_wait_s: float,
    on_started: Callable[[RunProcess], None],
) -> None:
    """Start ``tart run`` in the background and wait until the guest agent answers.

    When macOS refuses to start another VM (its limit counts VMs that are not
    ours too), wait and retry for up to ``limit_wait_s`` rather than fail.
    ``on_started`` receives every ``tart run`` process as soon as it exists, so
    that the caller can always reap it.
    """
    limit_deadline = time.monotonic() + limit_wait_s
    told = False
    while True:
        run = RunProcess(tart, name, shares)
        on_started(run)
        deadline = time.monotonic() + settings.boot_timeout_ms / 1000
        try:
            _wait_for_agent(tart, name, run, deadline, settings.boot_timeout_ms)
            return
        except _RunEnded as end:
            if SYSTEM_LIMIT_TEXT not in end.output:
                raise VMError(f"VM {name} did not start: {end}") from None
            if time.monotonic() >= limit_deadline:
                raise VMError(
                    f"VM {name} could not start within {limit_wait_s:.0f} s: macOS keeps "
                    f"refusing another VM ({end.output.strip()}); stop VMs you do not need "
                    f"(`tart list`, `tart stop NAME`)"
                ) from None
            if not told:
                notify(
                    "macOS refuses to start another VM (its limit counts VMs not started "
                    f"by nanoclaw too): waiting for one to stop ({end.output.strip()})"
                )
                told = True
            time.sleep(LIMIT_RETRY_S)


def _stop_timeout_s(settings: TartSettings) -> int:
    return max(1, math.ceil(settings.stop_timeout_ms / 1000))


class _Cleanup:
    """Runs cleanup steps to the end despite interruptions; failures become notices."""

    def __init__(self, notify: Notify) -> None:
        self.notify = notify
        self.interrupted: BaseException | None = None

    def step(self, what: str, fn: Callable[[], None], attempts: int = 3) -> None:
        for _ in range(attempts):
            try:
                fn()
                return
            except Exception as exc:
                self.notify(f"{what} failed: {exc}; the next run's sweep will retry")
                return
            except BaseException as exc:  # Ctrl-C or SIGTERM while cleaning: finish first
                self.interrupted = self.interrupted or exc

    def reraise(self) -> None:
        if self.interrupted is not None:
            raise self.interrupted


@contextlib.contextmanager
def ephemeral_vm(
    tart: Tart,
    settings: TartSettings,
    vm: VMName,
    shares: Sequence[Share],
    *,
    pool: SlotPool,
    notify: Notify,
    limit_wait_s: float,
) -> Iterator[str]:
    """A fresh VM cloned from the base, booted and answering; yields its name.

    The VM holds one of ``pool``'s slots while it runs (waiting for one if all
    are taken), and is stopped and deleted however the block ends.
    """
    register(vm.name)
    runs: list[RunProcess] = []
    cleanup = _Cleanup(notify)
    try:
        tart.clone(settings.base_image, vm.name)
        tart.set(vm.name, cpus=settings.cpus, memory_mb=settings.memory_mb)

        def waiting() -> None:
            notify(
                f"waiting for a free VM slot: {pool.size} tart VM(s) of nanoclaw already "
                f"running on this machine (TART_MAX_RUNNING={pool.size})"
            )

        with pool.slot(poll_s=0.25, on_wait=waiting):
            try:
                boot(
                    tart,
                    vm.name,
                    shares,
                    settings,
                    notify=notify,
                    limit_wait_s=limit_wait_s,
                    on_started=runs.append,
                )
                yield vm.name
            finally:
                stop_s = _stop_timeout_s(settings)
                if runs and runs[-1].ended() is None:
                    cleanup.step(
                        f"stopping VM {vm.name}", lambda: _stop_quietly(tart, vm.name, stop_s)
                    )
                for run in runs:
                    cleanup.step(f"ending `tart run {vm.name}`", lambda r=run: r.reap(5.0))
    except TartError as exc:
        raise VMError(str(exc)) from None
    finally:
        cleanup.step(f"deleting VM {vm.name}", lambda: delete_vm(tart, vm.name))
        unregister(vm.name)
        cleanup.reraise()


def _stop_quietly(tart: Tart, name: str, timeout_s: int) -> None:
    try:
        tart.stop(name, timeout_s=timeout_s)
    except TartError as exc:
        if not exc.missing:  # "not running" is what we want
            raise
