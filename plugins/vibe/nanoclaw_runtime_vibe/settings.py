"""The vibe runtime's settings: the seed's names, NanoClaw's defaults, and the engine choice.

Group ``containerConfig`` keys: ``vibeImage``, ``cpus``, ``ram``, ``engine``,
``keepWarm``, ``network``. The core's keys (``timeout``, ``agentCommand``,
``env``, ``additionalMounts``) apply as to every runtime; ``VIBE_TIMEOUT`` is read
before ``CONTAINER_TIMEOUT`` for vibe groups.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

import nanoclaw_runtimes_core as nc

MAX_CPUS = max(1, os.cpu_count() or 1)
DEFAULT_KEEP_WARM_MS = 5 * 60 * 1000


@nc.settings_class
class PrepareOptions:
    """``prepare --base vibe`` options."""

    minimal: bool = nc.setting(
        False, help="A minimal busybox base that builds in seconds (no package manager)."
    )
    source: str = nc.setting(
        "", help="A raw disk image to start the base from, instead of a fresh one."
    )
    provision_script: str = nc.setting(
        "", help="A shell script run as root in the guest to provision the base (vibe tool)."
    )
    size_gib: int = nc.setting(
        0,
        validator=nc.between(0, 1024),
        help="Size of the base's disk in GiB (QEMU engine); 0: 3 GiB minimal, 8 GiB Debian.",
    )
    suite: str = nc.setting("", help="Debian suite of the QEMU engine's base; empty: bookworm.")
    clis: str = nc.setting(
        "-",
        help="Agent CLIs (npm packages, comma-separated) installed in the QEMU engine's Debian "
        "base; - for the default set, empty for none.",
    )


@nc.settings_class
class VibeSettings:
    """Resolved settings of the vibe runtime for one group."""

    timeout_env: ClassVar[str] = "VIBE_TIMEOUT"
    prepare_options: ClassVar[type] = PrepareOptions

    images_dir: str = nc.setting(
        "./data/vibe-images",
        env="VIBE_IMAGES_DIR",
        help="Folder of the base images and of every group's disk ({group}.raw), relative to the "
        "project root.",
    )
    base_image: str = nc.setting(
        "base.raw",
        env="VIBE_BASE_IMAGE",
        key="vibeImage",
        validator=nc.plain_file_name,
        help="File name (inside the images folder) of the base a group's disk is cloned from; "
        "never another group's disk.",
    )
    cpus: int = nc.setting(
        2,
        env="VIBE_CPUS",
        key="cpus",
        validator=nc.between(1, MAX_CPUS),
        help="Virtual CPUs of the group's VM (at most this host's CPU count).",
    )
    ram: int = nc.setting(
        2048,
        env="VIBE_RAM",
        key="ram",
        validator=nc.between(128, 256 * 1024, "MB"),
        help="Guest memory in megabytes.",
    )
    keep_warm: int = nc.setting(
        DEFAULT_KEEP_WARM_MS,
        env="VIBE_KEEP_WARM",
        key="keepWarm",
        validator=nc.between(0, 24 * 3600 * 1000, "ms"),
        help="How long (milliseconds) the group's VM stays booted after a run, so the next run "
        "starts at once; 0 powers it off after every run.",
    )
    engine: Literal["auto", "vibe", "qemu"] = nc.setting(
        "auto",
        env="VIBE_ENGINE",
        key="engine",
        help="What boots the disk: vibe (macOS), qemu (Linux), or auto (vibe when installed, "
        "else qemu on Linux).",
    )
    network: bool = nc.setting(
        False,
        env="VIBE_NETWORK",
        key="network",
        help="Give the agent a network (QEMU: user-mode NAT, none when false; the vibe tool's "
        "guest always has one, and false takes it from the agent's own namespace). An agent "
        "calling an API needs it.",
    )
    debug: bool = nc.setting(False, env="VIBE_DEBUG", help="Copy the VM's console to stderr.")
    executable: str = nc.setting(
        "vibe", env="VIBE_EXECUTABLE", help="The vibe executable: a name on PATH or a path."
    )
    vibe_network: str = nc.setting(
        "vznat",
        env="VIBE_NETWORK_MODE",
        validator=nc.non_empty,
        help="vibe's --network (nat, vznat or a bridge interface); vznat works without "
        "vmnet-helper on every macOS.",
    )
    qemu_binary: str = nc.setting(
        "qemu-system-x86_64", env="VIBE_QEMU", help="QEMU system emulator of the qemu engine."
    )
    qemu_accel: Literal["auto", "kvm", "tcg"] = nc.setting(
        "auto",
        env="VIBE_QEMU_ACCEL",
        help="QEMU acceleration: kvm, tcg, or auto (kvm when a bounded probe boots, else tcg).",
    )
    qemu_virtiofsd: str = nc.setting(
        "",
        env="VIBE_QEMU_VIRTIOFSD",
        help="virtiofsd that shares the mounts with the guest (empty: the one QEMU ships).",
    )
    qemu_boot_timeout: int = nc.setting(
        0,
        env="VIBE_QEMU_BOOT_TIMEOUT",
        validator=nc.between(0, 3600, "seconds"),
        help="Seconds a guest may take to boot before it is killed and reported (0: 30 under "
        "TCG, 10 under KVM).",
    )
