"""Container names and ids of runs.

A run's name is its ``--name`` when that is a valid run name (2 to 63 of
``[a-zA-Z0-9_.-]``, as ``nanoclaw-runtimes run --name`` takes). NanoClaw's names
(``nanoclaw-<folder>-<ms>``) can be longer with long group folders; those are
shortened the same way every time, so ``stop LONG-NAME`` finds the run that
``run --name LONG-NAME`` started, and ``ps`` shows a name that ``stop`` accepts
too. An id is a hash of the name and start time, in docker's short form (12 hex
digits).
"""

from __future__ import annotations

import hashlib
import re

from ..plan import RUN_NAME as RUN_NAME_PATTERN
from .flags import AdapterError

DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
RUN_NAME = re.compile(RUN_NAME_PATTERN)
KEEP = 50


def run_name(name: str) -> str:
    """The run name for a docker ``--name`` (raises AdapterError, docker's wording)."""
    if not DOCKER_NAME.fullmatch(name):
        raise AdapterError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if RUN_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[:KEEP].rstrip('-_.')}-{digest}"


def lookup_name(name: str) -> str | None:
    """The run name ``stop NAME`` looks for, or None when NAME cannot name a run."""
    return run_name(name) if DOCKER_NAME.fullmatch(name) else None


def container_id(name: str, started: float) -> str:
    """A stable short id of one run."""
    return hashlib.sha256(f"{name}\0{started!r}".encode()).hexdigest()[:12]
