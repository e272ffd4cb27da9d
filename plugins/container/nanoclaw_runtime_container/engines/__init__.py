"""The engines that run a container, and how ``engine = auto`` picks one.

Auto-detection order (the first engine usable on this host wins):

- Linux and others: ``bubblewrap`` (no daemon, no image, starts in milliseconds),
  ``podman``, ``docker``;
- macOS: ``container`` (Apple's, a light VM per container), ``docker``, ``podman``.

An engine runs one execution end to end (its command line, through
:func:`nanoclaw_runtimes_core.run_process`), and knows how to sweep what a
killed run left behind and to build or check its base.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

import nanoclaw_runtimes_core as nc

if TYPE_CHECKING:
    from ..settings import ContainerSettings

MACOS_ORDER = ("container", "docker", "podman")
LINUX_ORDER = ("bubblewrap", "podman", "docker")


class Leftover(nc.Record, kw_only=False):
    """A container of this project that outlived its run."""

    name: str
    group: str | None


class Engine(Protocol):
    """What the runtime needs from an engine. ``name`` is the value of the ``engine`` setting."""

    name: str

    def status(self) -> nc.EngineStatus:
        """Whether the engine can run here and what it isolates; quick, starts nothing lasting,
        never raises (probes are cached per host)."""
        ...

    def execute(self, request: nc.ExecuteRequest[ContainerSettings]) -> nc.ExecutionResult:
        """One execution, as the ``execute`` hook describes it."""
        ...

    def sweep(self, project: nc.Project, group: str | None) -> list[str]:
        """Remove leftovers of killed runs (of one group, or of every group); one line each."""
        ...

    def leftovers(self, project: nc.Project) -> list[Leftover]:
        """Containers of the project that outlived their run."""
        ...

    def prepare_base(self, request: nc.PrepareRequest[ContainerSettings]) -> str:
        """Build or pull the agent image, or check the engine works; a one-line summary."""
        ...


def make_engine(name: str) -> Engine:
    """The engine called ``name`` (not ``auto``)."""
    if name == "bubblewrap":
        from .bubblewrap import BubblewrapEngine

        return BubblewrapEngine()
    if name in ("docker", "podman"):
        from .docker import DockerEngine

        return DockerEngine(tool=name)
    if name == "container":
        from .apple import AppleEngine

        return AppleEngine()
    raise ValueError(f"unknown engine {name!r}")


def detection_order(platform: str | None = None) -> tuple[str, ...]:
    """The order ``auto`` tries engines in on ``platform`` (default: this host)."""
    return MACOS_ORDER if (platform or sys.platform) == "darwin" else LINUX_ORDER


def auto_statuses() -> list[nc.EngineStatus]:
    """The status of every engine ``auto`` would try, in order, stopping at the first usable."""
    statuses: list[nc.EngineStatus] = []
    for name in detection_order():
        status = make_engine(name).status()
        statuses.append(status)
        if status.available:
            break
    return statuses


def select_engine(settings: ContainerSettings) -> Engine:
    """The engine the settings ask for, resolving ``auto``; raises EngineUnavailable."""
    if settings.engine != "auto":
        return make_engine(settings.engine)
    statuses = auto_statuses()
    if statuses and statuses[-1].available:
        return make_engine(statuses[-1].engine)
    raise nc.EngineUnavailable(unavailable_message(statuses))


def unavailable_message(statuses: list[nc.EngineStatus]) -> str:
    """One paragraph saying why no engine can run, and how to fix each."""
    lines = [
        "No container engine is usable on this host (CONTAINER_ENGINE=auto tried "
        f"{', '.join(s.engine for s in statuses)}):"
    ]
    for s in statuses:
        lines.append(f"  {s.engine}: {s.detail}" + (f" Fix: {s.fix}" if s.fix else ""))
    return "\n".join(lines)


def combined_status(settings: ContainerSettings) -> nc.EngineStatus:
    """The status reported for the runtime: the configured engine, or auto's choice."""
    if settings.engine != "auto":
        return make_engine(settings.engine).status()
    statuses = auto_statuses()
    last = statuses[-1]
    if last.available:
        return last
    return nc.EngineStatus(
        available=False, engine="auto", detail=unavailable_message(statuses), fix=last.fix
    )
