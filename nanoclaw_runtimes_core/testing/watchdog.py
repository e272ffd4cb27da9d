"""A hard deadline for one call into a runtime: a runtime that ignores its timeout fails its test
(and its processes are killed) instead of hanging the whole suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .processes import descendants, kill_all, processes_with

T = TypeVar("T")


class DeadlineExceeded(AssertionError):
    """The call was still running at its deadline; the message says what was killed."""


class _Box(Generic[T]):
    def __init__(self) -> None:
        self.value: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


def call_with_deadline(
    fn: Callable[[], T], deadline_s: float, *, what: str, markers: tuple[str, ...] = ()
) -> T:
    """Run ``fn`` in a worker thread and return its result (or raise its exception).

    When it is still running after ``deadline_s`` seconds, every process this
    test process started (and every process whose command line holds one of
    ``markers``) is killed, the worker is given a few seconds to return, and
    :class:`DeadlineExceeded` is raised naming ``what`` and the killed processes.
    """
    box: _Box[T] = _Box()
    before = set(descendants())

    def work() -> None:
        try:
            box.value = fn()
        except BaseException as exc:
            box.error = exc
        finally:
            box.done.set()

    worker = threading.Thread(target=work, name=f"deadline: {what}", daemon=True)
    worker.start()
    if not box.done.wait(deadline_s):
        leftovers = [p for p in descendants() if p not in before]
        for marker in markers:
            leftovers += [int(line.split(":", 1)[0]) for line in processes_with(marker)]
        killed = kill_all(sorted(set(leftovers)))
        returned = box.done.wait(10)
        raise DeadlineExceeded(
            f"{what} was still running {deadline_s:.0f} s after it started, past its own "
            "timeout: the runtime must stop the sandbox when request.timeout_ms passes without "
            "output (nanoclaw_runtimes_core.run_process does). Killed: "
            + ("; ".join(killed) or "nothing (no process of its own was found)")
            + ("" if returned else "; the call still did not return after that")
        )
    if box.error is not None:
        raise box.error
    return box.value  # type: ignore[return-value]
