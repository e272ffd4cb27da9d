"""The container runtime's settings.

Group ``containerConfig`` keys: ``engine``, ``image``, ``cpus``, ``ram``, ``timeout``,
``network``, ``env``. Everything else comes from the environment or the project's ``.env``.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import attrs

from nanoclaw_runtimes_core.settings import one_of, positive, setting

ENGINES = ("auto", "container", "docker", "podman", "bubblewrap")
DEFAULT_IMAGE = "nanoclaw-agent:latest"
EXAMPLE_AGENT_MODULE = "nanoclaw_runtimes_core.example_agent"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _not_negative(_inst: Any, _attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"must be a whole number of seconds, 0 or more, got {value}")


def _image(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise ValueError(
            f"must be an image reference such as {DEFAULT_IMAGE} or ghcr.io/me/agent:1, "
            f"got {value!r}"
        )


def _command(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    try:
        shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"is not a valid command line ({exc}): {value!r}") from None


def _env_entries(_inst: Any, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for entry in value:
        name = entry.split("=", 1)[0]
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"each entry must be NAME=VALUE (set it) or NAME (pass the host's value "
                f"through), NAME made of letters, digits and _; got {entry!r}"
            )


@attrs.define(frozen=True, kw_only=True)
class ContainerSettings:
    """Resolved settings of the container runtime for one group."""

    engine: str = setting(
        "auto",
        env="CONTAINER_ENGINE",
        key="engine",
        validator=one_of(*ENGINES),
        help="What runs the sandbox: bubblewrap, docker, podman, container (Apple), or auto "
        "(macOS: container, docker, podman; Linux: bubblewrap, podman, docker).",
    )
    image: str = setting(
        DEFAULT_IMAGE,
        env="CONTAINER_IMAGE",
        key="image",
        validator=_image,
        help="Agent image for docker, podman and Apple container (not used by bubblewrap).",
    )
    cpus: int = setting(
        2, env="CONTAINER_CPUS", key="cpus", validator=positive, help="CPU limit (whole CPUs)."
    )
    ram: int = setting(
        2048,
        env="CONTAINER_MEMORY",
        key="ram",
        validator=positive,
        help="Memory limit in megabytes.",
    )
    timeout: int = setting(
        1800000,
        env="CONTAINER_TIMEOUT",
        key="timeout",
        validator=positive,
        help="Idle timeout of a run in milliseconds (each output block restarts it).",
    )
    network: bool | None = setting(
        None,
        env="CONTAINER_NETWORK",
        key="network",
        help="Network access inside the sandbox. Unset: off for bubblewrap, the engine's "
        "default network for image engines; false: no network at all.",
    )
    env: tuple[str, ...] = setting(
        (),
        env="CONTAINER_ENV",
        key="env",
        validator=_env_entries,
        help="Extra environment of the sandbox: NAME=VALUE entries, or NAME to pass the "
        "host's value through. Values never appear on a command line.",
    )
    agent_command: str = setting(
        "",
        env="CONTAINER_AGENT_COMMAND",
        validator=_command,
        help="bubblewrap only: the agent's command line inside the sandbox (split into words, "
        "no shell syntax). Empty: this host's Python running the core's example agent.",
    )
    rootfs: str = setting(
        "",
        env="CONTAINER_ROOTFS",
        help="bubblewrap only: a folder used read-only as the sandbox's root file system, "
        "instead of the host's /usr, /etc subset and Python. Relative to the project root.",
    )
    stop_grace: int = setting(
        15,
        env="CONTAINER_STOP_GRACE",
        validator=_not_negative,
        help="Seconds a container is given to stop on timeout or interruption before it is "
        "killed (docker/podman stop -t, Apple container stop -t).",
    )
