"""Helpers of the container runtime's tests: a project driven through ``nc.Runtimes``, a
recording sink, and process inspection through ``/proc``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import nanoclaw_runtimes_core as nc

T = TypeVar("T")

SANDBOX_UID = 1_000_000_000
"""The sandbox user's host uid when the tests run as root (the core's default)."""
ENGINE_ENV = {
    "CONTAINER_RUNTIME": "container",
    "CONTAINER_ENGINE": "bubblewrap",
    "CONTAINER_STOP_GRACE": "1",
    "NANOCLAW_RUNTIMES_LOAD": "container",
}


class RecordingSink(nc.OutputSink):
    """Keeps everything a run sends, with the time each output block arrived."""

    def __init__(self, on_block: Callable[[nc.ContainerOutput], None] | None = None) -> None:
        self.outputs: list[nc.ContainerOutput] = []
        self.output_times: list[float] = []
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.problems: list[str] = []
        self.on_block = on_block
        self.lock = threading.Lock()

    def on_output(self, output: nc.ContainerOutput) -> None:
        with self.lock:
            self.outputs.append(output)
            self.output_times.append(time.monotonic())
        if self.on_block is not None:
            self.on_block(output)

    def on_stdout(self, data: bytes) -> None:
        with self.lock:
            self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        with self.lock:
            self.stderr += data

    def on_problem(self, message: str) -> None:
        with self.lock:
            self.problems.append(message)

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


class TestProject:
    """A throw-away NanoClaw project: groups ``main``, ``dev``, ``other`` and ``global``."""

    __test__ = False

    def __init__(self, root: Path, environ: Mapping[str, str]) -> None:
        self.root = root
        for folder in ("groups/global", "groups/main", "groups/dev", "groups/other"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.environ = dict(environ)

    def config(self, folder: str, **container: Any) -> None:
        """Write ``groups/{folder}/config.json`` with these ``containerConfig`` keys."""
        path = self.root / "groups" / folder / "config.json"
        path.write_text(json.dumps({"containerConfig": container}))

    def runtimes(self, **environ: str) -> nc.Runtimes:
        return nc.Runtimes(self.root, environ={**self.environ, **environ})

    def command(
        self,
        folder: str,
        *argv: str,
        timeout_ms: int = 60_000,
        sink: RecordingSink | None = None,
        **environ: str,
    ) -> tuple[nc.ExecutionResult, RecordingSink]:
        """Run ``argv`` in the group's sandbox."""
        sink = sink or RecordingSink()
        result = self.runtimes(**environ).execute(
            folder, command=list(argv), timeout_ms=timeout_ms, sink=sink
        )
        return result, sink

    def sh(
        self, folder: str, script: str, **kwargs: Any
    ) -> tuple[nc.ExecutionResult, RecordingSink]:
        """Run ``sh -c script`` in the group's sandbox."""
        return self.command(folder, "sh", "-c", script, **kwargs)

    def agent(
        self,
        folder: str,
        prompt: str = "hello",
        *,
        secrets: Mapping[str, str] | None = None,
        timeout_ms: int = 60_000,
        sink: RecordingSink | None = None,
        **environ: str,
    ) -> tuple[nc.ExecutionResult, RecordingSink]:
        """Send one ContainerInput to the group's agent."""
        sink = sink or RecordingSink()
        inp = nc.ContainerInput(
            prompt=prompt,
            group_folder=folder,
            chat_jid="test@g.us",
            is_main=folder == "main",
            secrets=dict(secrets) if secrets else None,
        )
        result = self.runtimes(**environ).execute(
            folder, input=inp, timeout_ms=timeout_ms, sink=sink
        )
        return result, sink


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def live_pids() -> list[int]:
    """Every process that is not a zombie."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state = _stat(int(entry.name))
            if state is not None and state[0] != "Z":
                found.append(int(entry.name))
    return found


def descendants(pid: int | None = None) -> list[int]:
    """Live descendants of ``pid`` (default: this process)."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for p in live_pids():
        state = _stat(p)
        if state is not None:
            children.setdefault(state[1], []).append(p)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            found.append(child)
            queue.append(child)
    return found


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def environ_of(pid: int) -> dict[str, str]:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in data.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def processes_of_uid(uid: int) -> list[int]:
    return [p for p in live_pids() if uid_of(p) == uid]


def processes_with(marker: bytes) -> list[int]:
    """Live processes (not this one) whose command line contains ``marker``."""
    return [p for p in live_pids() if p != os.getpid() and marker in b"\0".join(cmdline(p))]


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """``check()``'s first truthy value within ``timeout`` seconds; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(interval)


def in_thread(fn: Callable[[], T]) -> tuple[threading.Thread, list[T | BaseException]]:
    """Start ``fn`` in a thread; the list receives its result (or exception)."""
    box: list[T | BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def run(sandbox: object, **kwargs: Any) -> tuple[nc.ExecutionResult, RecordingSink]:
    """Run a :class:`~nanoclaw_runtime_container.engines.bubblewrap.Sandbox` directly, as the
    sandbox user a run would use."""
    from nanoclaw_runtime_container.engines import bubblewrap

    sink = RecordingSink()
    user = bubblewrap.configured_user(None)
    bwrap = bubblewrap.bwrap_path()
    result = bubblewrap.run_sandbox(
        sandbox,  # type: ignore[arg-type]
        user=user,
        probe=bubblewrap.ready_probe(bwrap, user),
        bwrap=bwrap,
        timeout_ms=kwargs.pop("timeout_ms", 30_000),
        sink=sink,
        agent_mode=False,
        stdin=None,
        limits=None,
        grace_s=1.0,
        **kwargs,
    )
    return result, sink


def watchdog(proc: subprocess.Popen[bytes], seconds: float = 60.0) -> threading.Timer:
    """Kill ``proc`` after ``seconds``, so a hung CLI fails the test instead of hanging it."""
    timer = threading.Timer(seconds, proc.kill)
    timer.daemon = True
    timer.start()
    return timer
