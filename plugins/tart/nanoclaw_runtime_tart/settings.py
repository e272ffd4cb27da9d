"""The tart runtime's settings: ``TART_*`` variables and the group keys they map to.

Group ``containerConfig`` keys: ``tartImage``, ``cpus``, ``ram``, ``spare``. The
core's keys (``timeout``, ``agentCommand``, ``env``, ``additionalMounts``) apply as
to every runtime; ``TART_TIMEOUT`` is read before ``CONTAINER_TIMEOUT`` for tart
groups.
"""

from __future__ import annotations

from typing import ClassVar

import nanoclaw_runtimes_core as nc

DEFAULT_BASE_IMAGE = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
GUEST_SHARES = "/Volumes/My Shared Files"
"""Where a macOS guest automounts the ``--dir`` shares of the default tag."""
GUEST_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# tart set takes --cpu as UInt16 and --memory in MiB; Virtualization.framework on Apple
# silicon refuses more than 64 virtual CPUs, and no Mac has more than 512 GB of memory.
MAX_CPUS = 64
MIN_RAM_MB = 1024
MAX_RAM_MB = 512 * 1024


def _local_or_oci_name(value: str) -> None:
    if not value.strip() or value.startswith("-") or any(c.isspace() for c in value):
        raise ValueError(
            "must be a local tart VM name or an OCI image such as "
            f"{DEFAULT_BASE_IMAGE} (no spaces, not starting with '-'), got {value!r}"
        )


def _absolute(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute guest path, got {value!r}")


@nc.settings_class
class TartSettings:
    """Resolved settings of the tart runtime for one group."""

    timeout_env: ClassVar[str] = "TART_TIMEOUT"

    base_image: str = nc.setting(
        DEFAULT_BASE_IMAGE,
        env="TART_BASE_IMAGE",
        key="tartImage",
        validator=_local_or_oci_name,
        help="The VM every run is cloned from: a local tart VM or an OCI image (pulled on first "
        "use; `prepare --base tart` pulls it ahead). It needs the Tart Guest Agent, which every "
        "non-vanilla Cirrus Labs image has.",
    )
    cpus: int = nc.setting(
        4,
        env="TART_CPUS",
        key="cpus",
        validator=nc.between(1, MAX_CPUS),
        help="Virtual CPUs of each run's VM (tart refuses fewer than the image's minimum).",
    )
    ram: int = nc.setting(
        8192,
        env="TART_RAM",
        key="ram",
        validator=nc.between(MIN_RAM_MB, MAX_RAM_MB, "MB"),
        help="Memory of each run's VM in megabytes (tart refuses less than the image's minimum).",
    )
    spare: bool = nc.setting(
        False,
        env="TART_SPARE",
        key="spare",
        help="Keep one clean, never-used VM booted ahead for the group's next run, so it starts "
        "without waiting for a boot; still one VM per run, deleted after it.",
    )
    spare_idle: int = nc.setting(
        10 * 60 * 1000,
        env="TART_SPARE_IDLE",
        validator=nc.between(1000, 24 * 3600 * 1000, "ms"),
        help="How long (milliseconds) a spare VM nobody used is kept before it is deleted.",
    )
    executable: str = nc.setting(
        "tart",
        env="TART_EXECUTABLE",
        validator=nc.non_empty,
        help="The tart executable: a name on PATH or a path.",
    )
    tart_home: str = nc.setting(
        "",
        env="TART_HOME",
        help="tart's home folder (its VMs and image cache), passed on to tart; empty: ~/.tart.",
    )
    state_dir: str = nc.setting(
        "",
        env="TART_STATE_DIR",
        help="Where this runtime records the VMs it made and who owns them, per user (empty: "
        "~/.local/state/nanoclaw-runtimes/tart); it is how leftovers of killed runs are found.",
    )
    max_running: int = nc.setting(
        2,
        env="TART_MAX_RUNNING",
        validator=nc.between(1, 16),
        help="VMs of this runtime running at once on this machine (macOS runs at most 2 macOS "
        "guests); further runs wait for one to end.",
    )
    boot_timeout: int = nc.setting(
        180_000,
        env="TART_BOOT_TIMEOUT",
        validator=nc.between(1000, 3600 * 1000, "ms"),
        help="How long (milliseconds) a new VM may take until its guest agent answers and its "
        "workspace share is mounted.",
    )
    stop_timeout: int = nc.setting(
        10,
        env="TART_STOP_TIMEOUT",
        validator=nc.between(1, 600, "seconds"),
        help="Seconds `tart stop` waits for the VM to end before it kills it.",
    )
    guest_path: str = nc.setting(
        GUEST_PATH,
        env="TART_GUEST_PATH",
        validator=nc.non_empty,
        help="PATH of the agent in the guest (the guest agent's own PATH lacks Homebrew's "
        "first place).",
    )
    guest_home: str = nc.setting(
        "/Users/admin",
        env="TART_GUEST_HOME",
        validator=_absolute,
        help="HOME of the agent in the guest (the guest agent runs as the image's user, admin "
        "in Cirrus Labs images).",
    )
    guest_python: str = nc.setting(
        "python3",
        env="TART_GUEST_PYTHON",
        validator=nc.non_empty,
        help="The Python in the guest that runs the example agent when the group sets no "
        "agentCommand.",
    )
