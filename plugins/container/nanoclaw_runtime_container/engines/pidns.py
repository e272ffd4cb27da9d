"""Finding a bubblewrap sandbox's processes on the host, to stop them gracefully.

bwrap starts the sandbox in its own PID namespace, whose init (bwrap's, PID 1
inside) runs the command and exits with it. Stopping means SIGTERM to every
process of that namespace except its init; once they end, bwrap exits. The
namespace is found from the process this runtime started: of its descendants
that entered another PID namespace, the most deeply nested is the init.
"""

from __future__ import annotations

import contextlib
import os
import signal


def _parents() -> dict[int, int]:
    """Every process's parent, from ``/proc/<pid>/stat``."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
            fields = data[data.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                parents[int(entry.name)] = int(fields[1])
    return parents


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _depth(pid: int) -> int:
    """How deeply nested ``pid``'s PID namespace is (the entries of ``NSpid``)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return len(line.split()) - 1
    except OSError:
        pass
    return 0


def sandbox_pids(root_pid: int) -> list[int]:
    """Host PIDs of the processes in the sandbox started under ``root_pid``, except its init.

    The sandbox's namespace is the deepest one entered below ``root_pid`` (a staging bwrap
    has a PID namespace of its own, around the sandbox's)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    init: int | None = None
    target: str | None = None
    deepest = 0
    queue = [(root_pid, _pid_ns(root_pid))]
    while queue:
        pid, ns = queue.pop(0)
        for child in sorted(children.get(pid, ())):
            child_ns = _pid_ns(child)
            if child_ns is not None and ns is not None and child_ns != ns:
                depth = _depth(child)
                if depth > deepest:
                    init, target, deepest = child, child_ns, depth
            queue.append((child, child_ns))
    if init is None:
        return []
    return [pid for pid in parents if pid != init and _pid_ns(pid) == target]


def terminate(root_pid: int) -> None:
    """SIGTERM the sandbox's processes (see the module docstring)."""
    for pid in sandbox_pids(root_pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
