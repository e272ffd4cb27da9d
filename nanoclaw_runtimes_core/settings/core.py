"""The core's own settings: the ones every runtime shares, each declared once here."""

from __future__ import annotations

from typing import Literal

from ..record import Record
from .fields import setting, settings_class
from .validators import between, command_words, env_entries, non_empty

DEFAULT_TIMEOUT_MS = 1_800_000
MAX_TIMEOUT_MS = 2**31 - 1
DEFAULT_ALLOWLIST = "~/.config/nanoclaw/mount-allowlist.json"


class AdditionalMount(Record):
    """One entry of ``containerConfig.additionalMounts`` as the group wrote it (unvalidated)."""

    host_path: str
    container_path: str | None = None
    readonly: bool = True


@settings_class
class CoreSettings:
    """Settings of the core, common to every runtime. Group keys here apply whatever the runtime."""

    runtime: str | None = setting(
        None,
        env="CONTAINER_RUNTIME",
        key="runtime",
        validator=non_empty,
        help="The runtime a group runs on; unset: the first installed runtime whose engine works "
        "here (container, vibe, tart).",
    )
    timeout: int = setting(
        DEFAULT_TIMEOUT_MS,
        env="CONTAINER_TIMEOUT",
        key="timeout",
        validator=between(1, MAX_TIMEOUT_MS, "ms"),
        help="Idle timeout of a run in milliseconds; each output block restarts it. A runtime "
        "may add its own variable read first (VIBE_TIMEOUT, TART_TIMEOUT).",
    )
    agent_command: tuple[str, ...] | None = setting(
        None,
        env="CONTAINER_AGENT_COMMAND",
        key="agentCommand",
        words=True,
        validator=command_words,
        help="The agent's command line inside the sandbox (a list of words, or one string split "
        "like a shell would, no shell syntax); unset: the runtime's default agent.",
    )
    env: tuple[str, ...] = setting(
        (),
        env="CONTAINER_ENV",
        key="env",
        validator=env_entries,
        help="Extra environment of the sandbox (never of host processes): NAME=VALUE entries, "
        "or NAME to pass this host's value through. Values never appear on a command line.",
    )
    additional_mounts: tuple[AdditionalMount, ...] = setting(
        (),
        key="additionalMounts",
        help="Extra host folders under /workspace/extra/, checked against the mount allowlist.",
    )
    max_concurrent: int = setting(
        5,
        env="MAX_CONCURRENT_CONTAINERS",
        validator=between(1, 256),
        help="How many sandboxes may run at once across all groups of the project.",
    )
    allowlist: str = setting(
        DEFAULT_ALLOWLIST,
        env="NANOCLAW_MOUNT_ALLOWLIST",
        validator=non_empty,
        help="The mount allowlist that additionalMounts are checked against.",
    )
    main_groups: tuple[str, ...] = setting(
        ("main",),
        env="NANOCLAW_MAIN_GROUPS",
        help="Group folders that are the main group when no ContainerInput says so (command "
        "mode, prepare); in agent mode the input's isMain decides.",
    )
    sandbox_user: str = setting(
        "",
        env="NANOCLAW_SANDBOX_USER",
        help="When nanoclaw-runtimes runs as root: the unprivileged host user sandboxes act as "
        "(uid[:gid] or a user name); empty: 1000000000:1000000000. Ignored for other users.",
    )
    limits: Literal["best-effort", "strict"] = setting(
        "best-effort",
        env="NANOCLAW_LIMITS",
        help="best-effort: run and warn when a cpu, memory or process limit cannot be enforced "
        "here; strict: refuse to run instead.",
    )
    debug: bool = setting(
        False,
        env="NANOCLAW_DEBUG",
        help="Log full input, arguments, mounts and output of every run (secrets redacted).",
    )
    log_level: Literal["trace", "debug", "info", "warn", "error", "fatal"] = setting(
        "info",
        env="LOG_LEVEL",
        help="NanoClaw's log level; debug or trace make run logs verbose, as NanoClaw's do.",
    )

    @property
    def verbose(self) -> bool:
        """Whether run logs carry the full input, arguments, mounts and output."""
        return self.debug or self.log_level in ("debug", "trace")
