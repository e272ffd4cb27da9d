"""The host's Python API: one object that prepares, executes, resets and reports per group.

::

    from nanoclaw_runtimes_core import Runtimes
    runtimes = Runtimes("/path/to/nanoclaw")
    result = runtimes.execute("dev", input=ContainerInput(...), sink=my_sink)

It picks the runtime of each group (group config > ``CONTAINER_RUNTIME`` >
auto-detection), resolves the runtime's settings, validates mounts, keeps two
executions of one group apart and bounds how many run at once.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attrs import define, evolve

from . import config as config_mod
from .errors import ConfigError, EngineUnavailable, RuntimeNotFound, UserError
from .groups import list_groups, resolve_group
from .locks import SlotPool, group_lock, hold, locks_dir
from .models import (
    ContainerInput,
    EngineStatus,
    ExecuteRequest,
    ExecutionResult,
    Group,
    GroupRequest,
    OutputSink,
    PrepareRequest,
    Project,
    StatsRequest,
    StatsRow,
)
from .mounts import MountPlan, contract_mounts, describe_rejection
from .plugins import AUTO_ORDER, Registry, default_registry
from .settings import (
    CoreSettings,
    raise_problems,
    resolve_settings,
    try_resolve_settings,
)

Progress = Callable[[str, "float | None"], None]


@define(frozen=True, kw_only=True)
class GroupPlan:
    """Everything decided for one group before its runtime is called."""

    group: Group
    runtime: str
    settings: Any
    mounts: MountPlan
    timeout_ms: int
    config_file: Path
    core: CoreSettings


class Runtimes:
    """Per-group dispatch to runtime plugins for one project root."""

    def __init__(
        self,
        root: str | os.PathLike[str] = ".",
        *,
        environ: Mapping[str, str] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.project = Project(root=Path(root).resolve())
        self._environ = environ
        self._registry = registry

    # ----------------------------------------------------------------- plumbing

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = default_registry(self.environ)
        return self._registry

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _dotenv(self) -> dict[str, str]:
        return config_mod.load_dotenv_values(self.project.root)

    def core_settings(self) -> CoreSettings:
        return resolve_settings(
            CoreSettings,
            group_values=None,
            group_file="",
            environ=self.environ,
            dotenv=self._dotenv(),
            dotenv_file=".env",
        )

    def engine_status(self, runtime: str) -> EngineStatus | None:
        """What the runtime says of its engine on this host (None if it does not say)."""
        info = self.registry.get(runtime)
        settings = self._runtime_settings(runtime, None, "")
        return self.registry.call(info.name, "engine_status", settings=settings)

    def detect_runtime(self) -> str:
        """The first installed runtime, in :data:`AUTO_ORDER`, whose engine works here."""
        names = self.registry.names()
        ordered = [n for n in AUTO_ORDER if n in names] + [n for n in names if n not in AUTO_ORDER]
        for name in ordered:
            with contextlib.suppress(UserError):
                status = self.engine_status(name)
                if status is None or status.available:
                    return name
        raise RuntimeNotFound(
            "no runtime is usable on this host: installed: "
            + (", ".join(names) or "none")
            + "; set CONTAINER_RUNTIME or containerConfig.runtime, or install one "
            "(pip install nanoclaw-runtime-container); `nanoclaw-runtimes doctor` says more"
        )

    def _runtime_settings(
        self, runtime: str, values: Mapping[str, Any] | None, group_file: str
    ) -> Any:
        cls = self.registry.get(runtime).settings_class
        if cls is None:
            return None
        return resolve_settings(
            cls,
            group_values=values,
            group_file=group_file,
            environ=self.environ,
            dotenv=self._dotenv(),
            dotenv_file=".env",
        )

    def runtime_for(self, folder: str) -> str:
        """The runtime name a group runs on (group config > CONTAINER_RUNTIME > auto)."""
        return self.plan(folder).runtime

    def plan(
        self, folder: str, *, runtime: str | None = None, timeout_ms: int | None = None
    ) -> GroupPlan:
        """Resolve a group: its folder, config, runtime, settings, mounts and timeout.

        Raises :class:`ConfigError` with every problem found, or :class:`UserError`.
        """
        group = resolve_group(self.project, folder)
        dotenv = self._dotenv()
        cfg = config_mod.load_group_config(self.project, group.folder, strict=False)
        core_r = try_resolve_settings(
            CoreSettings,
            group_values=None,
            group_file=cfg.file,
            environ=self.environ,
            dotenv=dotenv,
        )
        core = core_r.settings
        name = runtime or cfg.runtime or core.runtime or self.detect_runtime()
        try:
            info = self.registry.get(name)
        except RuntimeNotFound as exc:
            where = (
                "--runtime"
                if runtime
                else f"{cfg.file}: containerConfig.runtime"
                if cfg.runtime
                else "CONTAINER_RUNTIME"
            )
            raise RuntimeNotFound(f"{where}: {exc}") from None
        others = self.registry.group_keys_of_others(name)
        found = config_mod.try_resolve_group_settings(
            cfg,
            info.settings_class,
            runtime_name=name,
            other_runtimes_keys=others,
            environ=self.environ,
            dotenv=dotenv,
        )
        raise_problems(found.problems, core_r.problems)
        settings = found.settings
        mounts = contract_mounts(
            self.project,
            group,
            cfg.additional_mounts,
            self.project.resolve(core.allowlist_path),
        )
        timeout = timeout_ms or cfg.timeout or getattr(settings, "timeout", None) or core.timeout
        if timeout <= 0:
            raise UserError(f"--timeout: expected a positive number of milliseconds, got {timeout}")
        return GroupPlan(
            group=group,
            runtime=name,
            settings=settings,
            mounts=mounts,
            timeout_ms=timeout,
            config_file=cfg.path,
            core=core,
        )

    @contextlib.contextmanager
    def _exclusive(
        self, plan: GroupPlan, *, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        """Hold the group's lock, then a run slot of ``MAX_CONCURRENT_CONTAINERS``."""
        group, size = plan.group, plan.core.max_concurrent

        def told(message: str) -> Callable[[], None] | None:
            return (lambda: on_wait(message)) if on_wait is not None else None

        busy = f"group {group.folder!r} is busy with another run; waiting for it to finish"
        with hold(group_lock(self.project, group.folder), on_wait=told(busy)):
            pool = SlotPool(locks_dir(self.project), size, name="run-slot")
            with pool.slot(on_wait=told(f"all {size} run slots are busy; waiting")):
                yield

    # ----------------------------------------------------------------- hooks

    def execute(
        self,
        folder: str,
        *,
        input: ContainerInput | None = None,
        command: tuple[str, ...] | list[str] | None = None,
        runtime: str | None = None,
        timeout_ms: int | None = None,
        sink: OutputSink | None = None,
        debug: bool | None = None,
    ) -> ExecutionResult:
        """Run the group's agent (``input``) or a command (``command``) in its sandbox."""
        if (input is None) == (command is None):
            raise UserError("give either a ContainerInput or a command, not both or neither")
        if command is not None and not command:
            raise UserError("run: the command after `--` is empty; give the command to run")
        if input is not None and input.group_folder != folder:
            raise UserError(
                f"ContainerInput.groupFolder is {input.group_folder!r} but the group asked for is "
                f"{folder!r}; they must be the same"
            )
        plan = self.plan(folder, runtime=runtime, timeout_ms=timeout_ms)
        sink = sink or OutputSink()
        problems = [describe_rejection(r) for r in plan.mounts.rejected] + list(plan.mounts.notes)
        for problem in problems:
            sink.on_problem(problem)
        verbose = plan.core.debug if debug is None else debug
        request = ExecuteRequest(
            project=self.project,
            group=plan.group,
            settings=plan.settings,
            mounts=plan.mounts.mounts,
            timeout_ms=plan.timeout_ms,
            input=input,
            command=tuple(command) if command is not None else None,
            sink=_RecordingSink(sink, problems),
            run_id=uuid.uuid4().hex[:12],
            debug=verbose,
        )
        with self._exclusive(plan, on_wait=sink.on_problem):
            self._ensure_engine(plan.runtime, plan.settings)
            self.registry.call(
                plan.runtime,
                "prepare",
                request=PrepareRequest(
                    project=self.project, settings=plan.settings, group=plan.group
                ),
            )
            started = datetime.now(timezone.utc)
            result = self.registry.call(plan.runtime, "execute", request=request)
            if not isinstance(result, ExecutionResult):
                raise UserError(
                    f"runtime {plan.runtime!r} returned {type(result).__name__} from execute, "
                    "not an ExecutionResult"
                )
        from .runlog import write_run_log

        write_run_log(
            group=plan.group,
            runtime=plan.runtime,
            result=result,
            started=started,
            inp=input,
            command=request.command,
            mounts=request.mounts,
            problems=problems,
            verbose=verbose,
        )
        return result

    def _ensure_engine(self, runtime: str, settings: Any) -> None:
        if not self.registry.implements(runtime, "engine_status"):
            return
        status = self.registry.call(runtime, "engine_status", settings=settings)
        if status is not None and not status.available:
            raise EngineUnavailable(
                f"runtime {runtime!r} cannot run here: {status.engine}: {status.detail}"
                + (f"\nfix: {status.fix}" if status.fix else "")
            )

    def prepare(
        self,
        folder: str | None = None,
        *,
        base_runtime: str | None = None,
        progress: Progress | None = None,
        force: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Prepare a group (``folder``) or a runtime's base (``base_runtime``)."""
        report = progress or (lambda message, fraction: None)
        if folder is None:
            if base_runtime is None:
                raise UserError("prepare needs a group or --base RUNTIME")
            self._require(base_runtime, "prepare")
            request = PrepareRequest(
                project=self.project,
                settings=self._runtime_settings(base_runtime, None, ""),
                progress=report,
                force=force,
                options=dict(options or {}),
            )
            return self.registry.call(base_runtime, "prepare", request=request)
        plan = self.plan(folder)
        self._require(plan.runtime, "prepare")
        request = PrepareRequest(
            project=self.project,
            settings=plan.settings,
            group=plan.group,
            progress=report,
            force=force,
            options=dict(options or {}),
        )
        with self._exclusive(plan, on_wait=lambda m: report(m, None)):
            return self.registry.call(plan.runtime, "prepare", request=request)

    def reset(self, folder: str, *, runtime: str | None = None) -> list[str]:
        """Throw away what the group's runtime keeps for it; waits for a running execution."""
        plan = self.plan(folder, runtime=runtime)
        self._require(plan.runtime, "reset")
        with self._exclusive(plan):
            removed = self.registry.call(
                plan.runtime,
                "reset",
                request=GroupRequest(
                    project=self.project, group=plan.group, settings=plan.settings
                ),
            )
        return list(removed or [])

    def stats(self, runtimes: list[str] | None = None) -> list[StatsRow]:
        """What every (or each named) runtime keeps, one row per thing, sizes in MB."""
        rows: list[StatsRow] = []
        by_runtime = self._groups_by_runtime()
        for name in runtimes or self.registry.names():
            if not self.registry.implements(name, "stats"):
                continue
            request = StatsRequest(
                project=self.project,
                settings=self._runtime_settings(name, None, ""),
                groups=tuple(by_runtime.get(name, ())),
            )
            found = self.registry.call(name, "stats", request=request) or []
            rows += [r if r.runtime else evolve(r, runtime=name) for r in found]
        return rows

    def _groups_by_runtime(self) -> dict[str, list[Group]]:
        """Every readable group, under the name of the runtime it runs on."""
        core = self.core_settings()
        detected: list[str | None] = []  # auto-detection, done at most once
        found: dict[str, list[Group]] = {}
        for group in list_groups(self.project):
            cfg = config_mod.load_group_config(self.project, group.folder, strict=False)
            name = cfg.runtime or core.runtime
            if name is None:
                if not detected:
                    try:
                        detected.append(self.detect_runtime())
                    except UserError:
                        detected.append(None)
                name = detected[0]
            if name is not None and not cfg.problems:
                found.setdefault(name, []).append(group)
        return found

    def check_config(self, folder: str | None = None) -> dict[str, list[str]]:
        """Every problem per group (an empty list when a group is fine), and under ``.env``
        the lines of the project's ``.env`` that cannot be parsed."""
        folders = [folder] if folder else [g.folder for g in list_groups(self.project)]
        report: dict[str, list[str]] = {}
        env_problems = config_mod.dotenv_problems(self.project.root)
        if env_problems:
            report[config_mod.DOTENV_FILE] = [str(p) for p in env_problems]
        for name in folders:
            try:
                plan = self.plan(name)
            except ConfigError as exc:
                report[name] = exc.problems
            except UserError as exc:
                report[name] = str(exc).splitlines()
            else:
                rel = plan.config_file.relative_to(self.project.root).as_posix()
                report[name] = [f"{rel}: {describe_rejection(r)}" for r in plan.mounts.rejected] + [
                    f"{rel}: {note}" for note in plan.mounts.notes
                ]
        return report

    def _require(self, runtime: str, hook: str) -> None:
        if not self.registry.implements(runtime, hook):
            raise UserError(f"runtime {runtime!r} does not implement {hook}")


class _RecordingSink(OutputSink):
    """Passes everything on and keeps the problems for the run log."""

    def __init__(self, inner: OutputSink, problems: list[str]) -> None:
        self._inner, self._problems = inner, problems

    def on_output(self, output):  # type: ignore[no-untyped-def]
        self._inner.on_output(output)

    def on_stdout(self, data: bytes) -> None:
        self._inner.on_stdout(data)

    def on_stderr(self, data: bytes) -> None:
        self._inner.on_stderr(data)

    def on_problem(self, message: str) -> None:
        self._problems.append(message)
        self._inner.on_problem(message)
