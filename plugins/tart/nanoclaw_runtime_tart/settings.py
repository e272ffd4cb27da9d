"""The tart runtime's settings (``TART_*`` variables and the group keys they map to)."""

from __future__ import annotations

from typing import Any

import attrs

from nanoclaw_runtimes_core.settings import non_empty, positive, setting

DEFAULT_BASE_IMAGE = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
ACCESS_MODES = ("exec", "ssh")


def _access_mode(_instance: Any, _attribute: attrs.Attribute, value: str) -> None:
    if value not in ACCESS_MODES:
        raise ValueError(f"must be one of {', '.join(ACCESS_MODES)}, got {value!r}")


def _command(_instance: Any, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value or not value[0]:
        raise ValueError("the agent command needs at least a program name")


@attrs.define(frozen=True, kw_only=True)
class TartSettings:
    """How the tart runtime clones, sizes, reaches and bounds its throwaway macOS VMs."""

    base_image: str = setting(
        DEFAULT_BASE_IMAGE,
        env="TART_BASE_IMAGE",
        key="tartImage",
        validator=non_empty,
        help="VM every run is cloned from: a local tart VM name or an OCI image "
        "(pulled on first use; `prepare --base tart` pulls it ahead). The image needs the "
        "Tart Guest Agent (all Cirrus Labs images except the vanilla ones have it).",
    )
    executable: str = setting(
        "tart", env="TART_EXECUTABLE", validator=non_empty, help="the tart command to run"
    )
    cpus: int = setting(
        4, env="TART_CPUS", key="cpus", validator=positive, help="CPUs of each run's VM"
    )
    memory_mb: int = setting(
        8192,
        env="TART_MEMORY",
        key="ram",
        validator=positive,
        help="memory of each run's VM, in megabytes",
    )
    timeout: int | None = setting(
        None,
        env="TART_TIMEOUT",
        key="timeout",
        validator=positive,
        help="idle timeout of the agent in milliseconds (each output block restarts it); "
        "unset: CONTAINER_TIMEOUT, itself 1800000 by default",
    )
    access: str = setting(
        "exec",
        env="TART_ACCESS",
        validator=_access_mode,
        help="how the host reaches the guest: `exec` (Tart Guest Agent through `tart exec`); "
        "`ssh` (to `tart ip`) is not implemented",
    )
    boot_timeout_ms: int = setting(
        180_000,
        env="TART_BOOT_TIMEOUT",
        validator=positive,
        help="how long to wait, in milliseconds, for the guest agent of a new VM to answer",
    )
    stop_timeout_ms: int = setting(
        15_000,
        env="TART_STOP_TIMEOUT",
        validator=positive,
        help="grace given to a VM to shut down, in milliseconds, before it is forced off",
    )
    max_running: int = setting(
        2,
        env="TART_MAX_RUNNING",
        validator=positive,
        help="VMs of this runtime running at once on this machine (macOS allows 2 macOS "
        "guests); further runs wait for a slot",
    )
    slots_dir: str = setting(
        "",
        env="TART_SLOTS_DIR",
        help="folder of the lock files counting running VMs across processes and projects "
        "(default: a per-user folder in the temporary directory)",
    )
    agent_command: tuple[str, ...] = setting(
        ("nanoclaw-agent",),
        env="TART_AGENT_COMMAND",
        validator=_command,
        help="the agent run in the guest with the ContainerInput JSON on its stdin; it must be "
        "installed in the base image",
    )
    shares_root: str = setting(
        "/Volumes/My Shared Files",
        env="TART_GUEST_SHARES_ROOT",
        validator=non_empty,
        help="where the guest shows the folders shared with `tart run --dir`",
    )
