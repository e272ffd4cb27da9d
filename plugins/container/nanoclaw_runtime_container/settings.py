"""The container runtime's settings.

Group ``containerConfig`` keys: ``engine``, ``image``, ``cpus``, ``ram``, ``pids``,
``network``. Everything else comes from the environment or the project's ``.env``.
The core's own keys (``timeout``, ``agentCommand``, ``env``, ``additionalMounts``)
apply as to every runtime.
"""

from __future__ import annotations

from typing import Literal

import nanoclaw_runtimes_core as nc

ENGINES = ("auto", "bubblewrap", "docker", "podman", "container")
DEFAULT_IMAGE = "nanoclaw-runtimes-agent:latest"
"""The sample agent image ``prepare --base container`` builds; not NanoClaw's own tag."""


@nc.settings_class
class ContainerSettings:
    """Resolved settings of the container runtime for one group."""

    engine: Literal["auto", "bubblewrap", "docker", "podman", "container"] = nc.setting(
        "auto",
        env="CONTAINER_ENGINE",
        key="engine",
        help="What runs the sandbox: bubblewrap, docker, podman, container (Apple), or auto "
        "(Linux: bubblewrap, podman, docker; macOS: container, docker, podman).",
    )
    image: str = nc.setting(
        DEFAULT_IMAGE,
        env="CONTAINER_IMAGE",
        key="image",
        validator=nc.image_reference,
        help="Agent image for docker, podman and Apple container (bubblewrap uses the host's "
        "userland, or CONTAINER_ROOTFS).",
    )
    cpus: int = nc.setting(
        2,
        env="CONTAINER_CPUS",
        key="cpus",
        validator=nc.between(1, 256),
        help="CPU limit (whole CPUs).",
    )
    ram: int = nc.setting(
        2048,
        env="CONTAINER_MEMORY",
        key="ram",
        validator=nc.between(64, 1024 * 1024, "MB"),
        help="Memory limit in megabytes.",
    )
    pids: int = nc.setting(
        1024,
        env="CONTAINER_PIDS",
        key="pids",
        validator=nc.between(16, 1_000_000),
        help="Most processes the sandbox may run at once.",
    )
    network: bool = nc.setting(
        False,
        env="CONTAINER_NETWORK",
        key="network",
        help="Give the sandbox a network: false (the default) isolates it completely; true uses "
        "the host's network (bubblewrap) or the engine's default network.",
    )
    rootfs: str = nc.setting(
        "",
        env="CONTAINER_ROOTFS",
        help="bubblewrap only: a folder used read-only as the sandbox's root file system, instead "
        "of the host's /usr, /etc subset and Python. Relative to the project root.",
    )
    stop_grace: int = nc.setting(
        15,
        env="CONTAINER_STOP_GRACE",
        validator=nc.between(0, 600, "seconds"),
        help="Seconds a sandbox is given to stop on timeout or interruption before it is killed.",
    )
