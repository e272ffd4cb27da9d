"""The host's Python API: one object that prepares, executes, resets and reports per group.

::

    from nanoclaw_runtimes_core import Runtimes
    runtimes = Runtimes("/path/to/nanoclaw")
    result = runtimes.execute("dev", input=ContainerInput(...), sink=my_sink)

One run, in order: plan the group (pure, :mod:`.plan`), take its lock and a run
slot, register the run (:mod:`.runs`), materialise the plan (:mod:`.workspace`),
record the config in force (:mod:`.config.trust`), call the runtime's
``prepare`` then ``execute``, check the config afterwards, write the run log.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import groupconfig, trust
from .errors import ConfigError, UserError
from .groups import scan_groups
from .identity import sandbox_user
from .locks import SlotPool, group_lock, hold, locks_dir
from .models import (
    ContainerInput,
    ContainerOutput,
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
from .mounts import describe_rejection
from .plan import UNSAFE_MARKER, GroupPlan, HostMount, Planner, env_for_sandbox
from .plugins import Registry, default_registry
from .redact import Redactor
from .safefs import UnsafeEntry

Progress = Callable[[str, float | None], None]


class _RunSink(OutputSink):
    """Passes everything on, redacts problems, and keeps them for the run log."""

    def __init__(self, inner: OutputSink, redact: Redactor) -> None:
        self.inner, self.redact, self.problems = inner, redact, []  # type: ignore[var-annotated]

    def on_output(self, output: ContainerOutput) -> None:
        self.inner.on_output(output)

    def on_stdout(self, data: bytes) -> None:
        self.inner.on_stdout(data)

    def on_stderr(self, data: bytes) -> None:
        self.inner.on_stderr(data)

    def on_problem(self, message: str) -> None:
        message = self.redact(message)
        self.problems.append(message)
        self.inner.on_problem(message)


class Runtimes:
    """Per-group dispatch to runtime plugins for one project root."""

    def __init__(
        self,
        root: str | os.PathLike[str] = ".",
        *,
        environ: Mapping[str, str] | None = None,
        registry: Registry | None = None,
    ) -> None:
        path = Path(root)
        try:
            resolved = path.resolve(strict=True)
            os.listdir(resolved)
        except FileNotFoundError:
            raise UserError(f"project root {path} does not exist; pass --root DIR") from None
        except NotADirectoryError:
            raise UserError(f"project root {path} is not a folder; pass --root DIR") from None
        except PermissionError:
            raise UserError(
                f"project root {path} cannot be read by this user (uid {os.getuid()}); "
                "check its permissions or run as its owner"
            ) from None
        self.project = Project(root=resolved)
        self._environ = environ
        self._registry = registry
        self._planner: Planner | None = None

    # ----------------------------------------------------------------- plumbing

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = default_registry(self.environ)
        return self._registry

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            self._planner = Planner(self.project, self.environ, self.registry)
        return self._planner

    def plan(self, folder: str, **kwargs: Any) -> GroupPlan[Any]:
        """Plan a run of ``folder`` without side effects (see :mod:`.plan`)."""
        return self.planner.plan(folder, **kwargs)

    def runtime_settings(self, runtime: str) -> Any:
        """A runtime's settings without a group (environment and ``.env``)."""
        from .settings.problems import raise_problems
        from .settings.resolve import Resolved, resolve

        cls = self.registry.get(runtime).settings_class
        if cls is None:
            return None
        found: Resolved[Any] = resolve(cls, self.planner.sources())
        raise_problems(found.problems)
        return found.settings

    def engine_status(self, runtime: str) -> EngineStatus | None:
        """What the runtime says of its engine on this host (None if it does not say)."""
        info = self.registry.get(runtime)
        if "engine_status" not in info.hooks:
            return None
        status: EngineStatus | None = self.registry.call(
            runtime, "engine_status", settings=self.runtime_settings(runtime)
        )
        return status

    @contextlib.contextmanager
    def _exclusive(self, plan: GroupPlan[Any], on_wait: Callable[[str], None]) -> Iterator[None]:
        """Hold the group's lock, then a run slot of ``MAX_CONCURRENT_CONTAINERS``."""
        group, size = plan.group, plan.core.max_concurrent
        busy = f"group {group.folder!r} is busy with another run; waiting for it to finish"
        with hold(group_lock(self.project, group.folder), on_wait=lambda: on_wait(busy)):
            pool = SlotPool(locks_dir(self.project), size, name="run-slot")
            with pool.slot(on_wait=lambda: on_wait(f"all {size} run slots are busy; waiting")):
                yield

    # ----------------------------------------------------------------- execute

    def execute(
        self,
        folder: str,
        *,
        input: ContainerInput | None = None,
        command: Sequence[str] | None = None,
        runtime: str | None = None,
        timeout_ms: int | None = None,
        sink: OutputSink | None = None,
        debug: bool | None = None,
        run_name: str | None = None,
        host_mounts: Sequence[HostMount] = (),
        host_env: Mapping[str, str] | None = None,
        on_registered: Callable[[Any], None] | None = None,
        log_prefix: str = "container",
    ) -> ExecutionResult:
        """Run the group's agent (``input``) or a command (``command``) in its sandbox.

        ``run_name`` names the run for ``stop``/``ps`` (default: generated);
        ``host_mounts`` and ``host_env`` are what a host such as NanoClaw passed on
        its own command line, re-checked against the contract. The run log is
        ``groups/{folder}/logs/<log_prefix>-<time>.log`` (a host writing its own
        ``container-*.log`` passes another prefix).
        """
        from . import runs
        from .process import STOP_GRACE

        if (input is None) == (command is None):
            raise UserError("give either a ContainerInput or a command, not both or neither")
        if command is not None and not command:
            raise UserError("run: the command after `--` is empty; give the command to run")
        if input is not None and input.group_folder != folder:
            raise UserError(
                f"ContainerInput.groupFolder is {input.group_folder!r} but the group asked for is "
                f"{folder!r}; they must be the same"
            )
        plan = self.plan(
            folder,
            is_main=input.is_main if input is not None else None,
            runtime=runtime,
            timeout_ms=timeout_ms,
            run_name=run_name,
            host_mounts=host_mounts,
        )
        core = plan.core
        env = env_for_sandbox(core, self.environ, host_env)
        redact = Redactor(
            input.secret_values() if input is not None else (),
            (v for k, v in env.items() if k != "TZ"),
        )
        run_sink = _RunSink(sink or OutputSink(), redact)
        for rejected in plan.mounts.rejected:
            run_sink.on_problem(describe_rejection(rejected))
        for problem in (*plan.mounts.notes, *plan.problems):
            run_sink.on_problem(problem)
        verbose = core.verbose if debug is None else debug
        user = sandbox_user(core.sandbox_user)
        agent = core.agent_command
        request = ExecuteRequest(
            project=self.project,
            group=plan.group,
            settings=plan.settings,
            mounts=plan.mounts.mounts,
            masks=plan.mounts.masks,
            timeout_ms=plan.timeout_ms,
            input=input,
            command=tuple(command) if command is not None else None,
            agent_command=agent,
            env=env,
            sink=run_sink,
            run_id=plan.run_name.rsplit("-", 1)[-1],
            run_name=plan.run_name,
            debug=verbose,
            user=user,
            strict_limits=core.limits == "strict",
            state_dir=plan.state_dir,
        )
        args = request.command or agent or ("(the runtime's default agent)",)
        with self._exclusive(plan, on_wait=run_sink.on_problem):
            for line in runs.sweep():
                run_sink.on_problem(line)
            with runs.registered(
                plan.run_name, root=self.project.root, group=folder, runtime=plan.runtime
            ) as active:
                if on_registered is not None:
                    on_registered(active)
                for line in _materialise(plan, user):
                    run_sink.on_problem(line)
                trust.begin_run(self.project.root, folder, plan.live_config, plan.config)
                log_result: ExecutionResult | None = None
                grace_token = STOP_GRACE.set(active.stop_grace)
                try:
                    self.registry.call(
                        plan.runtime,
                        "prepare",
                        request=PrepareRequest(
                            project=self.project,
                            settings=plan.settings,
                            group=plan.group,
                            state_dir=plan.state_dir,
                        ),
                    )
                    result: ExecutionResult = self.registry.call(
                        plan.runtime, "execute", request=request
                    )
                except BaseException as exc:
                    log_result = _interrupted(exc, plan.timeout_ms)
                    raise
                else:
                    result = result.replace(
                        stderr_tail=redact(result.stderr_tail),
                        error=redact(result.error) if result.error else None,
                    )
                    log_result = result
                finally:
                    STOP_GRACE.reset(grace_token)
                    self._after_run(plan, run_sink)
                    if log_result is not None:
                        self._write_log(
                            plan,
                            log_result,
                            input,
                            tuple(args),
                            request.mounts,
                            run_sink,
                            verbose,
                            redact,
                            log_prefix,
                        )
        return result

    def _write_log(
        self,
        plan: GroupPlan[Any],
        result: ExecutionResult,
        inp: ContainerInput | None,
        args: tuple[str, ...],
        mounts: tuple[Any, ...],
        sink: _RunSink,
        verbose: bool,
        redact: Redactor,
        prefix: str = "container",
    ) -> None:
        """Write the run's log; a planted ``logs`` entry is reported, a failure never hides the
        run's own result."""
        from .runlog import write_run_log
        from .safefs import Repair

        repairs: list[Repair] = []
        try:
            write_run_log(
                group=plan.group,
                runtime=plan.runtime,
                run_name=plan.run_name,
                result=result,
                inp=inp,
                args=args,
                mounts=mounts,
                problems=list(sink.problems),
                verbose=verbose,
                redact=redact,
                repairs=repairs,
                prefix=prefix,
            )
        except (OSError, UserError) as exc:
            sink.on_problem(f"the run log was not written: {exc}")
        for repair in repairs:
            sink.on_problem(str(repair))

    def _after_run(self, plan: GroupPlan[Any], sink: OutputSink) -> None:
        """Check the group's config once the sandbox is gone: a change is refused."""
        try:
            live = groupconfig.read_live(plan.group.path)
        except UnsafeEntry as exc:
            live = UNSAFE_MARKER + str(exc).encode()
        notice = trust.end_run(self.project.root, plan.group.folder, live, file=plan.config_file)
        if notice:
            sink.on_problem(notice)

    # ----------------------------------------------------------------- prepare, reset, stats

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
                settings=self.runtime_settings(base_runtime),
                progress=report,
                force=force,
                options=dict(options or {}),
            )
            summary: str | None = self.registry.call(base_runtime, "prepare", request=request)
            return summary
        plan = self.plan(folder)
        self._require(plan.runtime, "prepare")
        with self._exclusive(plan, on_wait=lambda m: report(m, None)):
            _materialise(plan, sandbox_user(plan.core.sandbox_user))
            done: str | None = self.registry.call(
                plan.runtime,
                "prepare",
                request=PrepareRequest(
                    project=self.project,
                    settings=plan.settings,
                    group=plan.group,
                    progress=report,
                    force=force,
                    options=dict(options or {}),
                    state_dir=plan.state_dir,
                ),
            )
        return done

    def reset(self, folder: str, *, runtime: str | None = None, scope: str = "all") -> list[str]:
        """Throw away what the group's runtime keeps for it (``scope="warm"``: only stop what it
        keeps running for the group, such as a warm VM); waits for a running execution."""
        from . import runs

        plan = self.plan(folder, runtime=runtime)
        self._require(plan.runtime, "reset")
        with self._exclusive(plan, on_wait=lambda m: None):
            removed = runs.sweep()
            removed += (
                self.registry.call(
                    plan.runtime,
                    "reset",
                    request=GroupRequest(
                        project=self.project,
                        group=plan.group,
                        settings=plan.settings,
                        state_dir=plan.state_dir,
                        scope="warm" if scope == "warm" else "all",
                    ),
                )
                or []
            )
        return list(removed)

    def stats(self, runtimes: list[str] | None = None) -> list[StatsRow]:
        """What every (or each named) runtime keeps, one row per thing, sizes in MB."""
        from . import runs

        runs.sweep()
        rows: list[StatsRow] = []
        by_runtime = self.groups_by_runtime()
        for name in runtimes or self.registry.names():
            try:
                if not self.registry.implements(name, "stats"):
                    continue
                settings = self.runtime_settings(name)
            except UserError:
                continue
            request = StatsRequest(
                project=self.project, settings=settings, groups=tuple(by_runtime.get(name, ()))
            )
            found = self.registry.call(name, "stats", request=request) or []
            rows += [r if r.runtime else r.replace(runtime=name) for r in found]
        return rows

    def groups_by_runtime(self) -> dict[str, list[Group]]:
        """Every group whose config can be planned, under the name of the runtime it runs on."""
        found: dict[str, list[Group]] = {}
        groups, _skipped = scan_groups(self.project)
        for folder in groups:
            try:
                plan = self.plan(folder)
            except UserError:
                continue
            found.setdefault(plan.runtime, []).append(plan.group)
        return found

    def check_config(self, folder: str | None = None) -> dict[str, list[str]]:
        """Every problem per group (an empty list when a group is fine); ``.env`` and folders
        under ``groups/`` that are not groups are reported under their own names."""
        report: dict[str, list[str]] = {}
        if self.planner.dotenv.problems:
            report[".env"] = [str(p) for p in self.planner.dotenv.problems]
        if folder:
            folders = [folder]
        else:
            folders, skipped = scan_groups(self.project)
            for name, reason in skipped:
                report[f"groups/{name}"] = [reason]
        for name in folders:
            try:
                plan = self.plan(name)
            except ConfigError as exc:
                report[name] = exc.problems
            except UserError as exc:
                report[name] = str(exc).splitlines()
            else:
                report[name] = (
                    [f"{plan.config_file}: {describe_rejection(r)}" for r in plan.mounts.rejected]
                    + [f"{plan.config_file}: {n}" for n in plan.mounts.notes]
                    + list(plan.problems)
                )
        return report

    def trust_config(self, folder: str) -> bool:
        """Accept the group's current ``config.json`` (``config trust``); returns whether it had
        been refused. Checks the file first: an invalid file is not trusted."""
        plan_folder = self.project.groups_dir / folder
        try:
            live = groupconfig.read_live(plan_folder)
        except UnsafeEntry as exc:
            raise UserError(str(exc)) from None
        parsed = groupconfig.parse(live, file=f"groups/{folder}/config.json")
        if parsed.problems:
            raise ConfigError([str(p) for p in parsed.problems])
        with hold(group_lock(self.project, folder)):
            return trust.accept(self.project.root, folder, live)

    def _require(self, runtime: str, hook: str) -> None:
        if not self.registry.implements(runtime, hook):
            raise UserError(f"runtime {runtime!r} does not implement {hook}")


def _materialise(plan: GroupPlan[Any], user: Any) -> list[str]:
    from .workspace import materialise

    return materialise(plan, user)


def _interrupted(exc: BaseException, timeout_ms: int) -> ExecutionResult:
    """The result logged for a run that did not return (stopped, interrupted, failed)."""
    code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
    if isinstance(exc, KeyboardInterrupt):
        code = 130
    what = (
        "stopped"
        if code == 143
        else "interrupted"
        if code == 130
        else f"failed: {type(exc).__name__}: {exc}"
    )
    return ExecutionResult(exit_code=code, error=f"the run was {what}", timeout_ms=timeout_ms)
