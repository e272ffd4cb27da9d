"""The engines that run a container, and how ``engine = auto`` picks one.

Auto-detection order (the first engine usable on this host wins):

- macOS: ``container`` (Apple's, a light VM per container), ``docker``, ``podman``;
- Linux and others: ``bubblewrap`` (no daemon, no image, starts in milliseconds),
  ``podman`` (rootless, no daemon), ``docker``.

Every engine turns one execution into one command line whose stdin, stdout and
stderr are the sandbox's, and knows how to stop, kill and sweep what it started.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Protocol

from nanoclaw_runtimes_core.errors import EngineUnavailable
from nanoclaw_runtimes_core.models import EngineStatus

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.models import ExecuteRequest, PrepareRequest, Project

    from ..settings import ContainerSettings

MACOS_ORDER = ("container", "docker", "podman")
LINUX_ORDER = ("bubblewrap", "podman", "docker")


class Engine(Protocol):
    """What the runtime needs from an engine. ``name`` is the value of the ``engine`` setting."""

    name: str
    #: Whether the kernel should kill the engine's client when this process dies.
    die_with_parent: bool

    def status(self) -> EngineStatus:
        """Whether the engine can run here; quick, starts nothing lasting."""

    def argv(self, request: ExecuteRequest, name: str) -> list[str]:
        """The command line of one execution in a container called ``name``."""

    def env(self, request: ExecuteRequest) -> dict[str, str]:
        """The environment of that command line (values that must stay out of argv)."""

    def started(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Told the process of container ``name`` once it is started."""

    def stop(self, name: str) -> None:
        """Stop container ``name`` gracefully, then kill it if it is still there."""

    def kill(self, name: str) -> None:
        """Kill container ``name`` at once; quiet when it is already gone."""

    def sweep(self, group: str) -> list[str]:
        """Remove the group's leftover containers; one line per container removed."""

    def leftovers(self, group: str | None) -> list[str]:
        """Names of leftover containers of one group (or of every group) of the project."""

    def prepare_base(self, request: PrepareRequest) -> str:
        """Build or pull the agent image, or check the engine works; a one-line summary."""

    def explain_exit(self, exit_code: int | None, stderr_tail: str) -> str | None:
        """An error message when the exit status is the engine's, not the agent's."""


def make_engine(settings: ContainerSettings, project: Project | None, name: str) -> Engine:
    """The engine called ``name`` (not ``auto``)."""
    if name == "bubblewrap":
        from .bubblewrap import BubblewrapEngine

        return BubblewrapEngine(settings, project)
    if name in ("docker", "podman"):
        from .docker import DockerEngine

        return DockerEngine(settings, project, tool=name)
    if name == "container":
        from .apple import AppleEngine

        return AppleEngine(settings, project)
    raise ValueError(f"unknown engine {name!r}")


def detection_order(platform: str | None = None) -> tuple[str, ...]:
    """The order ``auto`` tries engines in on ``platform`` (default: this host)."""
    return MACOS_ORDER if (platform or sys.platform) == "darwin" else LINUX_ORDER


def auto_statuses(settings: ContainerSettings) -> list[EngineStatus]:
    """The status of every engine ``auto`` would try, in order, stopping at the first usable."""
    statuses: list[EngineStatus] = []
    for name in detection_order():
        status = make_engine(settings, None, name).status()
        statuses.append(status)
        if status.available:
            break
    return statuses


def select_engine(settings: ContainerSettings, project: Project | None) -> Engine:
    """The engine the settings ask for, resolving ``auto``; raises EngineUnavailable."""
    if settings.engine != "auto":
        return make_engine(settings, project, settings.engine)
    statuses = auto_statuses(settings)
    if statuses and statuses[-1].available:
        return make_engine(settings, project, statuses[-1].engine)
    raise EngineUnavailable(unavailable_message(statuses))


def unavailable_message(statuses: list[EngineStatus]) -> str:
    """One paragraph saying why no engine can run, and how to fix each."""
    lines = [
        "No container engine is usable on this host (CONTAINER_ENGINE=auto tried "
        f"{', '.join(s.engine for s in statuses)}):"
    ]
    for s in statuses:
        lines.append(f"  {s.engine}: {s.detail}" + (f" Fix: {s.fix}" if s.fix else ""))
    return "\n".join(lines)


def combined_status(settings: ContainerSettings) -> EngineStatus:
    """The status reported for the runtime: the configured engine, or auto's choice."""
    if settings.engine != "auto":
        return make_engine(settings, None, settings.engine).status()
    statuses = auto_statuses(settings)
    last = statuses[-1]
    if last.available:
        return EngineStatus(
            available=True,
            engine=last.engine,
            version=last.version,
            detail=f"auto-detected; {last.detail}".rstrip("; "),
        )
    return EngineStatus(
        available=False,
        engine="auto",
        detail=unavailable_message(statuses),
        fix="; ".join(f"{s.engine}: {s.fix}" for s in statuses if s.fix),
    )


__all__ = [
    "LINUX_ORDER",
    "MACOS_ORDER",
    "Engine",
    "auto_statuses",
    "combined_status",
    "detection_order",
    "make_engine",
    "select_engine",
]
