"""``stop``, ``kill`` and ``rm``: ending runs by name, from any process of the same user.

``stop [-t N] NAME...`` asks each run to stop with N seconds of grace (docker's
default 10, Apple's 5): the run's own process stops its sandbox, kills it after
the grace, writes the run log and exits. ``stop`` returns once the run has ended,
after at most N seconds plus a short allowance for that cleanup; a run that is
still there then is killed outright (its log is then lost, and ``stop`` says so).
``kill`` is a stop with no grace; ``rm -f`` kills; ``rm`` of a running run is refused,
as docker refuses it. Runs are ``--rm`` always: a run that ended is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import PROG
from .flags import AdapterError, Flag, parse
from .names import container_id, lookup_name

if TYPE_CHECKING:
    from ..runs import RunRecord

CLEANUP_S = 4.0
"""What ``stop`` allows a run, after its grace, to kill its sandbox and write its log."""
KILL_WAIT_S = 2.0
DOCKER_GRACE_S = 10.0
APPLE_GRACE_S = 5.0

STOP_FLAGS = (
    Flag(names=("-t", "--time", "--timeout"), dest="time", value=True),
    Flag(names=("-s", "--signal"), dest="signal", value=True, refused="runs stop by SIGTERM"),
)
KILL_FLAGS = (
    Flag(
        names=("-s", "--signal"),
        dest="signal",
        value=True,
        refused="kill always ends the run at once",
    ),
)
RM_FLAGS = (
    Flag(names=("-f", "--force"), dest="force"),
    Flag(names=("-v", "--volumes"), dest="volumes"),
)


def _find(name: str) -> RunRecord | None:
    """The run called ``name`` (a name or a unique id prefix), or None."""
    from .. import runs

    wanted = lookup_name(name)
    if wanted is not None:
        record = runs.find(wanted)
        if record is not None:
            return record
    matches = [r for r in runs.live_runs() if container_id(r.name, r.started).startswith(name)]
    return matches[0] if len(matches) == 1 and name else None


def _missing(name: str, dialect: str) -> str:
    if dialect == "apple":
        return f"Error: container with ID {name} not found"
    return f"Error response from daemon: No such container: {name}"


def _end(name: str, grace: float, *, dialect: str) -> bool:
    """Stop one run with ``grace``; True when it was found (and has ended)."""
    from .. import runs
    from ..locks import owner_alive

    record = _find(name)
    if record is None:
        print(_missing(name, dialect), file=sys.stderr)
        return False
    if runs.request_stop(record, grace=grace, wait_s=grace + CLEANUP_S):
        return True
    print(
        f"{PROG}: {name} did not end within {grace + CLEANUP_S:.0f} s; killing it "
        "(its run log may be missing)",
        file=sys.stderr,
    )
    try:
        os.kill(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and owner_alive(record.folder / runs.OWNER):
        time.sleep(0.02)
    return True


def _seconds(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise AdapterError(f"stop: -t {text}: expected a number of seconds") from None
    if value < 0:
        return default  # docker: a negative time means "the default"
    return value


def _names(positionals: Sequence[str], command: str) -> Sequence[str]:
    if not positionals:
        raise AdapterError(f"{command}: requires at least 1 argument: {command} NAME...")
    return positionals


def stop(words: Sequence[str], *, dialect: str) -> int:
    """``stop [-t N] NAME...``: prints each name stopped; 1 if one was not found."""
    parsed = parse(words, STOP_FLAGS, command="stop")
    default = APPLE_GRACE_S if dialect == "apple" else DOCKER_GRACE_S
    grace = _seconds(parsed.value("time"), default)
    return _end_all(_names(parsed.positionals, "stop"), grace, dialect=dialect)


def kill(words: Sequence[str], *, dialect: str) -> int:
    """``kill NAME...``: a stop with no grace."""
    parsed = parse(words, KILL_FLAGS, command="kill")
    return _end_all(_names(parsed.positionals, "kill"), 0.0, dialect=dialect)


def _end_all(names: Sequence[str], grace: float, *, dialect: str) -> int:
    """End each run, printing the names ended; 1 if one was not found."""
    status = 0
    for name in names:
        if _end(name, grace, dialect=dialect):
            print(name, flush=True)
        else:
            status = 1
    return status


def rm(words: Sequence[str], *, dialect: str) -> int:
    """``rm [-f] NAME...``: runs leave nothing to remove once ended; ``-f`` kills a running one."""
    parsed = parse(words, RM_FLAGS, command="rm")
    force = parsed.bools.get("force", False)
    status = 0
    for name in _names(parsed.positionals, "rm"):
        record = _find(name)
        if record is None:
            print(_missing(name, dialect), file=sys.stderr)
            status = 1
        elif not force:
            if dialect == "apple":
                print(f"Error: container {name} is running and can not be deleted", file=sys.stderr)
            else:
                print(
                    f'Error response from daemon: cannot remove container "/{name}": container '
                    "is running: stop the container before removing or force remove",
                    file=sys.stderr,
                )
            status = 1
        else:
            _end(name, 0.0, dialect=dialect)
            print(name, flush=True)
    return status
