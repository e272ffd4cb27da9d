"""The typed values passed between the core, the runtimes and the host.

Every class is an immutable attrs class with keyword-only construction, so new
fields can be added without breaking plugins or hosts that build them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from attrs import Factory, define, field

# --------------------------------------------------------------------------- project


@define(frozen=True, kw_only=True)
class Project:
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


@define(frozen=True, kw_only=True)
class Group:
    """One chat group: its folder under ``groups/`` and whether it is the main group."""

    folder: str
    path: Path
    is_main: bool

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"


# --------------------------------------------------------------------------- mounts


@define(frozen=True, kw_only=True)
class Mount:
    """A host folder shown inside the sandbox at ``container_path`` (an absolute guest path)."""

    host_path: Path
    container_path: str
    readonly: bool


@define(frozen=True, kw_only=True)
class RejectedMount:
    """An ``additionalMounts`` entry the allowlist refused, with the reason the user sees."""

    host_path: str
    container_path: str | None
    reason: str


# --------------------------------------------------------------------------- protocol


@define(frozen=True, kw_only=True)
class ContainerInput:
    """The JSON object a host writes to the sandbox's stdin (NanoClaw's ``ContainerInput``)."""

    prompt: str
    group_folder: str
    chat_jid: str
    is_main: bool
    session_id: str | None = None
    is_scheduled_task: bool | None = None
    assistant_name: str | None = None
    secrets: Mapping[str, str] | None = field(default=None, repr=False)


@define(frozen=True, kw_only=True)
class ContainerOutput:
    """One output block an agent printed between the NanoClaw markers."""

    status: Literal["success", "error"]
    result: str | None
    new_session_id: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- runs


class OutputSink:
    """Where a run's output goes while it runs. Every method may be called from a reader thread.

    The default does nothing; the dispatcher passes one that prints blocks as they arrive.
    """

    def on_output(self, output: ContainerOutput) -> None:
        """A complete output block was parsed."""

    def on_stdout(self, data: bytes) -> None:
        """Raw stdout of a command run (``run GROUP -- COMMAND``), markers excluded."""

    def on_stderr(self, data: bytes) -> None:
        """Raw stderr of the sandbox."""

    def on_problem(self, message: str) -> None:
        """A recoverable problem, e.g. an output block whose JSON did not parse."""


@define(frozen=True, kw_only=True)
class ExecuteRequest:
    """Everything a runtime needs for one execution in one group's sandbox.

    Exactly one of ``input`` (agent mode: the agent reads it on stdin and prints
    output blocks) and ``command`` (command mode: run this argv in the group's
    sandbox with the workspace as working directory) is set.
    """

    project: Project
    group: Group
    settings: Any
    mounts: tuple[Mount, ...]
    timeout_ms: int
    input: ContainerInput | None = None
    command: tuple[str, ...] | None = None
    sink: OutputSink = Factory(OutputSink)
    run_id: str = ""
    debug: bool = False

    def input_json(self) -> bytes:
        """The ContainerInput as the JSON bytes written to the agent's stdin."""
        from .protocol import encode_input

        if self.input is None:
            raise ValueError("this request runs a command, it has no ContainerInput")
        return encode_input(self.input)


@define(frozen=True, kw_only=True)
class ExecutionResult:
    """What came out of one execution; ``status`` applies the contract's rules."""

    exit_code: int | None
    outputs: tuple[ContainerOutput, ...] = ()
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stderr_tail: str = ""
    duration_ms: int = 0
    timeout_ms: int = 0
    error: str | None = None

    @property
    def status(self) -> Literal["success", "error"]:
        if self.error is not None:
            return "error"
        if self.timed_out:
            # Idle cleanup: a run that produced output and then went quiet succeeded.
            return "success" if self.outputs else "error"
        return "success" if self.exit_code == 0 else "error"

    def error_message(self) -> str | None:
        """The contract's error text for a failed run, or None when it succeeded."""
        if self.status == "success":
            return None
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"Container timed out after {self.timeout_ms} ms"
        tail = self.stderr_tail.strip()
        return f"Container exited with code {self.exit_code}" + (f": {tail}" if tail else "")


@define(frozen=True, kw_only=True)
class PrepareRequest:
    """A ``prepare`` call: for one group (``group`` set) or the runtime's base (``group`` None)."""

    project: Project
    settings: Any
    group: Group | None = None
    progress: Callable[[str, float | None], None] = lambda message, fraction: None
    force: bool = False
    options: Mapping[str, Any] = Factory(dict)


@define(frozen=True, kw_only=True)
class GroupRequest:
    """A ``reset`` call: one group of one runtime."""

    project: Project
    group: Group
    settings: Any


@define(frozen=True, kw_only=True)
class StatsRequest:
    """A ``stats`` call: every group of one runtime in one project.

    ``groups`` are the groups that run on this runtime (by their config, else
    ``CONTAINER_RUNTIME``, else auto-detection); a group whose config cannot be
    read is left out.
    """

    project: Project
    settings: Any
    groups: tuple[Group, ...] = ()


@define(frozen=True, kw_only=True)
class StatsRow:
    """One thing a runtime keeps on disk or in its engine, and what it costs."""

    runtime: str = ""
    group: str | None
    kind: str
    path: str | None = None
    apparent_mb: float = 0.0
    allocated_mb: float = 0.0
    modified: datetime | None = None
    note: str = ""


@define(frozen=True, kw_only=True)
class EngineStatus:
    """Whether a runtime's engine can run on this host, and what to do when it cannot."""

    available: bool
    engine: str
    version: str | None = None
    detail: str = ""
    fix: str = ""
