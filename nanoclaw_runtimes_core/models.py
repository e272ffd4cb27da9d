"""The typed values passed between the core, the runtimes and the host.

Every class is an immutable :class:`~nanoclaw_runtimes_core.record.Record` with
keyword-only construction, so new fields can be added without breaking plugins or
hosts that build them. The
request classes are generic in the runtime's settings class: a runtime that
declares ``VibeSettings`` receives ``ExecuteRequest[VibeSettings]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .record import Record, field

if TYPE_CHECKING:
    from datetime import datetime

S = TypeVar("S")

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# --------------------------------------------------------------------------- project


class Project(Record):
    """A NanoClaw project root and the folders the contract places under it."""

    root: Path

    @property
    def groups_dir(self) -> Path:
        return self.root / "groups"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def resolve(self, path: str | Path) -> Path:
        """A setting's path, taken relative to the project root unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p


class Group(Record):
    """One chat group: its folder under ``groups/`` and whether it is the main group."""

    folder: str
    path: Path
    is_main: bool

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"


# --------------------------------------------------------------------------- mounts

MountKind = Literal[
    "group", "global", "project", "sessions", "ipc", "agent-src", "store", "extra", "file"
]


class Mount(Record):
    """A host folder (or, for ``kind="file"``, one file) shown inside the sandbox at
    ``container_path``, an absolute guest path.

    ``ExecuteRequest.mounts`` lists them parents first, so binding them in order
    never hides one under another.
    """

    host_path: Path
    container_path: str
    readonly: bool
    kind: MountKind = "extra"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


class Mask(Record):
    """A file inside a mount that the sandbox must see read-only, with other content.

    ``source`` is a host file to show in its place (read-only), or None for an
    empty file or, with ``folder``, an empty folder (NanoClaw shows ``/dev/null``
    over the project's ``.env``).
    A runtime that cannot apply a mask says so in its ``engine_status``
    isolation; the core still detects and refuses changes made through it.
    """

    container_path: str
    source: Path | None
    reason: str
    folder: bool = False
    """Mask a folder (shown empty) rather than a file."""


class RejectedMount(Record):
    """An ``additionalMounts`` entry the allowlist refused, with the reason the user sees."""

    host_path: str
    container_path: str | None
    reason: str


# --------------------------------------------------------------------------- protocol


class ContainerInput(Record):
    """The JSON object a host writes to the sandbox's stdin (NanoClaw's ``ContainerInput``).

    Fields the core does not use (``script`` of a scheduled task, and whatever
    later NanoClaw versions add) are kept in ``extra`` and passed on to the
    agent unchanged.
    """

    prompt: str
    group_folder: str
    chat_jid: str
    is_main: bool
    session_id: str | None = None
    is_scheduled_task: bool | None = None
    assistant_name: str | None = None
    secrets: Mapping[str, str] | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default=_EMPTY, repr=False)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value, for redaction."""
        return tuple(v for v in (self.secrets or {}).values() if v)


class ContainerOutput(Record):
    """One output block an agent printed between the NanoClaw markers."""

    status: Literal["success", "error"]
    result: str | None
    new_session_id: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- runs


class OutputSink:
    """Where a run's output goes while it runs. Every method may be called from a reader thread.

    ``on_stdout`` receives the sandbox's stdout byte for byte (blocks included),
    as ``docker run`` would give it; ``on_output`` receives each output block
    once it is complete and parsed. The default does nothing.
    """

    def on_output(self, output: ContainerOutput) -> None:
        """A complete output block was parsed."""

    def on_stdout(self, data: bytes) -> None:
        """Raw stdout of the sandbox, byte for byte."""

    def on_stderr(self, data: bytes) -> None:
        """Raw stderr of the sandbox."""

    def on_problem(self, message: str) -> None:
        """A recoverable problem, e.g. an output block whose JSON did not parse."""


class SandboxUser(Record):
    """The host identity the sandbox acts as on host files.

    The invoking user when the CLI is not root; otherwise an unprivileged user
    (``NANOCLAW_SANDBOX_USER``). A VM maps its guest users ``0..65535`` to
    ``uid..uid+65535`` when the CLI is root, so guest root is ``uid`` on the host.
    """

    uid: int
    gid: int
    source: str = "invoking user"

    @property
    def is_invoking_user(self) -> bool:
        return self.source == "invoking user"


class Limits(Record):
    """Resources one sandbox may use; None means not limited."""

    cpus: float | None = None
    memory_mb: int | None = None
    pids: int | None = None


class ExecuteRequest(Record, Generic[S]):
    """Everything a runtime needs for one execution in one group's sandbox.

    Exactly one of ``input`` (agent mode: the agent reads it on stdin and prints
    output blocks) and ``command`` (command mode: run this argv in the group's
    sandbox with ``/workspace/group`` as working directory) is set.

    ``agent_command`` is the group's agent command line (``agentCommand``), or
    None for the runtime's default agent. ``env`` is the environment configured
    for the sandbox (never for host processes). ``run_name`` is unique, at most 63
    characters of ``[a-z0-9-]``, valid as a container or VM name on every engine.
    """

    project: Project
    group: Group
    settings: S
    mounts: tuple[Mount, ...]
    timeout_ms: int
    masks: tuple[Mask, ...] = ()
    input: ContainerInput | None = None
    command: tuple[str, ...] | None = None
    agent_command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default=_EMPTY, repr=False)
    sink: OutputSink = field(factory=OutputSink)
    run_id: str = ""
    run_name: str = ""
    debug: bool = False
    user: SandboxUser = field(factory=lambda: SandboxUser(uid=0, gid=0, source="unset"))
    strict_limits: bool = False
    """Refuse to run when a resource limit cannot be enforced (``NANOCLAW_LIMITS=strict``)."""
    state_dir: Path | None = None

    def input_json(self) -> bytes:
        """The ContainerInput as the JSON bytes written to the agent's stdin."""
        from .protocol import encode_input

        if self.input is None:
            raise ValueError("this request runs a command, it has no ContainerInput")
        return encode_input(self.input)

    def secret_values(self) -> tuple[str, ...]:
        """Values that must never reach argv, logs or files: the input's secrets."""
        return self.input.secret_values() if self.input is not None else ()


class ExecutionResult(Record):
    """What came out of one execution; ``status`` applies the contract's rules.

    ``outputs`` keeps at most the first blocks up to a total size cap
    (``output_count`` counts them all); ``stdout`` and ``stderr`` keep at most
    the first 10 MiB of each stream for the run log, flagged by
    ``stdout_truncated`` / ``stderr_truncated``. ``stderr_tail`` is the end of
    stderr, secrets redacted, for error messages.
    """

    exit_code: int | None
    outputs: tuple[ContainerOutput, ...] = ()
    output_count: int = 0
    new_session_id: str | None = None
    timed_out: bool = False
    stdout: bytes = field(default=b"", repr=False)
    stdout_truncated: bool = False
    stderr: bytes = field(default=b"", repr=False)
    stderr_truncated: bool = False
    stderr_tail: str = ""
    block_problems: tuple[str, ...] = ()
    duration_ms: int = 0
    timeout_ms: int = 0
    error: str | None = None

    @property
    def status(self) -> Literal["success", "error"]:
        if self.error is not None:
            return "error"
        if self.timed_out:
            # Idle cleanup: a run that produced output and then went quiet succeeded.
            return "success" if self.output_count else "error"
        return "success" if self.exit_code == 0 else "error"

    def error_message(self) -> str | None:
        """NanoClaw's error text for a failed run, or None when it succeeded."""
        if self.status == "success":
            return None
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"Container timed out after {self.timeout_ms}ms"
        return f"Container exited with code {self.exit_code}: {self.stderr_tail[-200:]}"


class PrepareRequest(Record, Generic[S]):
    """A ``prepare`` call: for one group (``group`` set) or the runtime's base (``group`` None).

    ``options`` are the ``prepare --base`` options (``--minimal`` and ``--option
    KEY=VALUE``), already checked against what the runtime declares.
    """

    project: Project
    settings: S
    group: Group | None = None
    progress: Callable[[str, float | None], None] = lambda message, fraction: None
    force: bool = False
    options: Mapping[str, Any] = _EMPTY
    state_dir: Path | None = None


class GroupRequest(Record, Generic[S]):
    """A ``reset`` call: one group of one runtime.

    ``scope`` is ``"all"`` (throw the group's state away) or ``"warm"`` (only stop
    what is kept running or booted ahead for the group, e.g. a warm VM; its state
    stays).
    """

    project: Project
    group: Group
    settings: S
    state_dir: Path | None = None
    scope: Literal["all", "warm"] = "all"


class StatsRequest(Record, Generic[S]):
    """A ``stats`` call: every group of one runtime in one project.

    ``groups`` are the groups that run on this runtime (by their config, else
    ``CONTAINER_RUNTIME``); a group whose config cannot be read is left out.
    """

    project: Project
    settings: S
    groups: tuple[Group, ...] = ()


class StatsRow(Record):
    """One thing a runtime keeps on disk or in its engine, and what it costs.

    ``kind`` is e.g. ``disk``, ``base``, ``workspace``, ``leftover``, ``warm-vm``;
    ``details`` carries kind-specific values (a warm VM's ``ageSeconds``,
    ``idleSecondsLeft``, ``memoryMB``), shown by ``stats --json``.
    """

    runtime: str = ""
    group: str | None
    kind: str
    path: str | None = None
    apparent_mb: float = 0.0
    allocated_mb: float = 0.0
    modified: datetime | None = None
    note: str = ""
    details: Mapping[str, Any] = _EMPTY


ISOLATION_FILESYSTEM = "filesystem"
"""The sandbox sees its mounts and a system image, nothing else of the host (no home
folders, no other group's files)."""
ISOLATION_PID = "pid"
"""The sandbox has its own process namespace: host processes are invisible."""
ISOLATION_NETWORK = "network"
"""The sandbox has no network unless the group's configuration turns it on."""
ISOLATION_MASKS = "masks"
"""Masked files (the group's ``config.json``, the project's ``.env``) are shown read-only
or empty inside the sandbox."""
ISOLATION_PROPERTIES = (ISOLATION_FILESYSTEM, ISOLATION_PID, ISOLATION_NETWORK, ISOLATION_MASKS)


class EngineStatus(Record):
    """Whether a runtime's engine can run on this host, and what to do when it cannot.

    ``isolation`` names the optional isolation properties the engine enforces
    (see :data:`ISOLATION_PROPERTIES`); the contract suite checks each one it
    declares. Every runtime must, whatever it declares, show each contract mount
    with its mode, keep secrets out of host argv and not pass the host's
    environment into the sandbox.
    """

    available: bool
    engine: str
    version: str | None = None
    detail: str = ""
    fix: str = ""
    isolation: frozenset[str] = frozenset()
