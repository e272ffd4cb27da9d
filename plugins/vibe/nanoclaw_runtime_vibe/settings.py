"""The vibe runtime's settings: the seed's names and defaults, plus the engine choice.

Group ``containerConfig`` keys: ``vibeImage``, ``cpus``, ``ram``, ``timeout``,
``engine``. Everything else comes from the environment or the project's ``.env``.
"""

from __future__ import annotations

from typing import Any

import attrs

from nanoclaw_runtimes_core.settings import at_least, one_of, positive, setting

DEFAULT_AGENT_COMMAND = "node /app/dist/index.js"


def plain_image_name(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    """A base image is named by a plain file name inside the images folder."""
    if (
        not value
        or "/" in value
        or "\\" in value
        or value in (".", "..")
        or value.startswith(".")
        or "\x00" in value
    ):
        raise ValueError(
            f"must be a plain file name inside the images folder, such as base.raw or "
            f"custom-dev.raw (no folders, no '..', not hidden), got {value!r}"
        )


def _command(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    import shlex

    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"is not a valid command line ({exc}): {value!r}") from None
    if not words:
        raise ValueError("must name the agent command run inside the guest")


@attrs.define(frozen=True, kw_only=True)
class VibeSettings:
    """Resolved settings of the vibe runtime for one group."""

    images_dir: str = setting(
        "./data/vibe-images",
        env="VIBE_IMAGES_DIR",
        help="Folder of the base images and of every group's disk ({group}.raw), "
        "relative to the project root.",
    )
    base_image: str = setting(
        "base.raw",
        env="VIBE_BASE_IMAGE",
        key="vibeImage",
        validator=plain_image_name,
        help="File name (inside the images folder) of the base a group's disk is cloned from.",
    )
    cpus: int = setting(2, env="VIBE_CPUS", key="cpus", validator=positive, help="Virtual CPUs.")
    ram: int = setting(
        2048, env="VIBE_RAM", key="ram", validator=positive, help="Guest memory in megabytes."
    )
    timeout: int = setting(
        300000,
        env="VIBE_TIMEOUT",
        key="timeout",
        validator=positive,
        help="Idle timeout of a run in milliseconds (each output block restarts it).",
    )
    debug: bool = setting(
        False, env="VIBE_DEBUG", help="Copy the VM's raw console output to stderr."
    )
    executable: str = setting(
        "vibe", env="VIBE_EXECUTABLE", help="The vibe executable: a name on PATH or a path."
    )
    engine: str = setting(
        "auto",
        env="VIBE_ENGINE",
        key="engine",
        validator=one_of("auto", "vibe", "qemu"),
        help="What boots the disk: vibe (macOS), qemu (Linux), or auto "
        "(vibe when installed, else qemu on Linux).",
    )
    agent_command: str = setting(
        DEFAULT_AGENT_COMMAND,
        env="VIBE_AGENT_COMMAND",
        validator=_command,
        help="Command line run inside the guest (split into words, no shell syntax); its "
        "stdin is the ContainerInput file.",
    )
    # ---- QEMU engine (Linux)
    qemu_binary: str = setting(
        "qemu-system-x86_64", env="VIBE_QEMU", help="QEMU system emulator used by the qemu engine."
    )
    qemu_accel: str = setting(
        "auto",
        env="VIBE_QEMU_ACCEL",
        validator=one_of("auto", "kvm", "tcg"),
        help="QEMU acceleration: kvm, tcg, or auto (kvm when a bounded probe boots, else tcg).",
    )
    qemu_virtiofsd: str = setting(
        "",
        env="VIBE_QEMU_VIRTIOFSD",
        help="virtiofsd that shares the workspace and mounts with the guest (empty: "
        "/usr/libexec/virtiofsd, /usr/lib/qemu/virtiofsd or virtiofsd on PATH).",
    )
    qemu_boot_timeout: int = setting(
        0,
        env="VIBE_QEMU_BOOT_TIMEOUT",
        validator=at_least(0, "seconds"),
        help="Seconds a guest may take to print its boot line before it is killed and "
        "reported (0: 30 under TCG, 10 under KVM).",
    )
    qemu_network: str = setting(
        "none",
        env="VIBE_QEMU_NETWORK",
        key="network",
        validator=one_of("none", "user"),
        help="Guest network: none, or user (QEMU user-mode NAT; an agent calling an API needs it).",
    )
    qemu_extra_args: str = setting(
        "",
        env="VIBE_QEMU_EXTRA_ARGS",
        help="Extra QEMU arguments appended to its command line (split like a shell command "
        "line, no shell).",
    )
