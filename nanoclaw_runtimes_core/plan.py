"""Planning a group's run: everything decided before a runtime is called, with no side effects.

A plan reads the group's trusted ``config.json``, the environment and
``.env``, picks the runtime (``--runtime`` > ``containerConfig.runtime`` >
``CONTAINER_RUNTIME`` > auto-detection), resolves the core's and the runtime's
settings, and lays out the mounts. It creates no folder and writes no file:
``config check``, ``doctor`` and ``stats`` plan freely, and a run materialises
its plan under the group's lock (:mod:`nanoclaw_runtimes_core.workspace`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from .config import groupconfig, trust
from .config.dotenv import DotEnv, read_dotenv
from .digest import sha256_hex
from .errors import RuntimeNotFound, UserError
from .groups import check_folder_name, resolve_group
from .locks import group_lock_path, is_held
from .models import Group, Mount, Project
from .mounts import MountPlan, check_host_mount, ordered, plan_mounts
from .plugins import AUTO_ORDER, Registry
from .record import Record
from .safefs import UnsafeEntry
from .settings.core import CoreSettings
from .settings.fields import known_keys
from .settings.problems import Problem, raise_problems, suggest
from .settings.resolve import Origin, Resolved, Sources, resolve

S = TypeVar("S")

RUN_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,62}"
"""What ``--name`` may be (compiled only when one is given)."""
_SLUG = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
CONFIG_MASK_NAME = "config.json"
UNSAFE_MARKER = b"unsafe: "
"""What stands for the bytes of a config file that cannot be read safely (a link, a FIFO)."""


class HostMount(Record):
    """A mount a host passed on its own command line (``-v host:ctr[:ro]``)."""

    host: str
    container: str
    readonly: bool


class GroupPlan(Record, Generic[S]):
    """Everything decided for one run of one group before its runtime is called."""

    project: Project
    group: Group
    runtime: str
    runtime_origin: Origin
    settings: S
    core: CoreSettings
    origins: Mapping[str, Origin]
    """Where each setting came from, ``core.<field>`` and ``<runtime>.<field>``."""
    mounts: MountPlan
    timeout_ms: int
    config: trust.TrustedConfig
    live_config: bytes | None
    config_file: str
    run_name: str
    run_folder: Path
    problems: tuple[str, ...] = ()
    """Warnings to report with the run (refused mounts, an untrusted config)."""

    @property
    def state_dir(self) -> Path:
        """This runtime's host-only state folder for the group (not created)."""
        return self.project.root / "data" / "runtimes" / self.runtime / self.group.folder


def project_tag(root: Path) -> str:
    """A short tag of the project root, to tell its runs and containers from other projects'."""
    return sha256_hex(str(root).encode())[:6]


def _slug(text: str) -> str:
    """``text`` lower-cased, every run of characters other than ``[a-z0-9]`` made one ``-``,
    none at either end (as ``re.sub(r"[^a-z0-9]+", "-", ...)`` would, without compiling it)."""
    out: list[str] = []
    for c in text.lower():
        if c in _SLUG:
            out.append(c)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


def make_run_name(project: Project, folder: str, requested: str | None = None) -> str:
    """A run name valid on every engine (at most 63 of ``[a-z0-9-]``), unique on this host."""
    if requested is not None:
        if not re.fullmatch(RUN_NAME, requested):
            raise UserError(
                f"--name {requested!r}: a name is 2 to 63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return requested
    safe = _slug(folder)[:32] or "group"
    return f"nc-{safe}-{project_tag(project.root)}-{os.urandom(6).hex()}"


class Planner:
    """Plans groups of one project; holds the sources every plan reads."""

    def __init__(self, project: Project, environ: Mapping[str, str], registry: Registry) -> None:
        self.project = project
        self.environ = environ
        self.registry = registry
        self._dotenv: DotEnv | None = None
        self._detected: str | None = None

    @property
    def dotenv(self) -> DotEnv:
        if self._dotenv is None:
            self._dotenv = read_dotenv(self.project.root)
        return self._dotenv

    def sources(self, container: Mapping[str, Any] | None = None, file: str = "") -> Sources:
        return Sources(
            group=container,
            group_file=file,
            environ=self.environ,
            dotenv=self.dotenv.values,
            dotenv_file=".env",
        )

    def core_settings(self) -> CoreSettings:
        """The core's settings without a group (environment and ``.env``); raises ConfigError."""
        found = resolve(CoreSettings, self.sources())
        raise_problems(self.dotenv.problems, found.problems)
        assert found.settings is not None
        return found.settings

    # ------------------------------------------------------------------ runtime choice

    def detect_runtime(self) -> str:
        """The first installed runtime, in :data:`AUTO_ORDER`, whose engine works here."""
        if self._detected is not None:
            return self._detected
        names = self.registry.names()
        ordered_names = [n for n in AUTO_ORDER if n in names] + [
            n for n in names if n not in AUTO_ORDER
        ]
        for name in ordered_names:
            try:
                info = self.registry.get(name)
                settings = None
                if info.settings_class is not None:
                    settings = resolve(info.settings_class, self.sources()).settings
                status = (
                    self.registry.call(name, "engine_status", settings=settings)
                    if "engine_status" in info.hooks
                    else None
                )
            except UserError:
                continue
            if status is None or status.available:
                self._detected = name
                return name
        raise RuntimeNotFound(
            "no runtime is usable on this host: installed: "
            + (", ".join(names) or "none")
            + "; set CONTAINER_RUNTIME or containerConfig.runtime, or install one "
            "(pip install nanoclaw-runtime-container); `nanoclaw-runtimes doctor` says more"
        )

    # ------------------------------------------------------------------ the plan

    def read_config(
        self, folder: str
    ) -> tuple[bytes | None, trust.TrustedConfig, groupconfig.GroupConfig]:
        """The live bytes of the group's config, the version in force, and that version parsed."""
        file = f"groups/{folder}/config.json"
        try:
            live = groupconfig.read_live(self.project.groups_dir / folder)
        except UnsafeEntry as exc:
            # A link or FIFO in its place: never followed. After a run that planted it, the last
            # trusted version goes on (the run works); for a group never run, it is an error.
            fallback = trust.last_trusted(self.project.root, folder, file=file, why=str(exc))
            if fallback is None:
                return (
                    None,
                    trust.TrustedConfig(data=None, live_digest="unsafe"),
                    (groupconfig.unsafe_problem(exc, file)),
                )
            marker = UNSAFE_MARKER + str(exc).encode()
            return marker, fallback, groupconfig.parse(fallback.data, file=file)
        active = is_held(group_lock_path(self.project, folder))
        trusted = trust.in_force(self.project.root, folder, live, file=file, run_active=active)
        return live, trusted, groupconfig.parse(trusted.data, file=file)

    def plan(
        self,
        folder: str,
        *,
        is_main: bool | None = None,
        runtime: str | None = None,
        timeout_ms: int | None = None,
        run_name: str | None = None,
        host_mounts: Sequence[HostMount] = (),
    ) -> GroupPlan[Any]:
        """Plan one run of ``folder``; raises ConfigError with every problem, or UserError."""
        check_folder_name(folder)
        live, trusted, cfg = self.read_config(folder)
        live_regular = not (live or b"").startswith(UNSAFE_MARKER)
        problems: list[Problem | str] = [*self.dotenv.problems, *cfg.problems]
        sources = self.sources(cfg.container, cfg.file)
        core_found = resolve(CoreSettings, sources)
        problems += core_found.problems
        core = core_found.settings or CoreSettings()

        name, origin = self._runtime_name(runtime, core_found.origins["runtime"], core)
        try:
            info = self.registry.get(name)
        except RuntimeNotFound as exc:
            raise RuntimeNotFound(f"{origin}: {exc}") from None
        cls = info.settings_class
        alias = getattr(cls, "timeout_env", None) if cls is not None else None
        if alias:
            core_found = resolve(CoreSettings, sources, env_aliases={"timeout": alias})
            core = core_found.settings or core
        runtime_found: Resolved[Any] | None = resolve(cls, sources) if cls is not None else None
        if runtime_found is not None:
            problems += runtime_found.problems
        problems += self._unknown_keys(cfg, name, cls)
        raise_problems(problems)

        group = resolve_group(self.project, folder, is_main=self._is_main(folder, is_main, core))
        run = make_run_name(self.project, folder, run_name)
        from .runs import runs_dir

        run_folder = runs_dir() / run
        mounts = plan_mounts(
            self.project,
            group,
            core.additional_mounts,
            core.allowlist,
            # A link or FIFO in its place is the sandbox's own; the host never reads it, and a
            # mask over it would land where it points.
            config_mask=(run_folder / CONFIG_MASK_NAME)
            if trusted.data is not None and live_regular
            else None,
        )
        mounts, notes = self._host_mounts(mounts, host_mounts, group, core)
        timeout = timeout_ms if timeout_ms is not None else core.timeout
        origins = {f"core.{k}": v for k, v in core_found.origins.items()}
        if runtime_found is not None:
            origins.update({f"{name}.{k}": v for k, v in runtime_found.origins.items()})
        if timeout_ms is not None:
            origins["core.timeout"] = Origin("--timeout")
        warnings = [*notes]
        if trusted.notice:
            warnings.insert(0, trusted.notice)
        return GroupPlan(
            project=self.project,
            group=group,
            runtime=name,
            runtime_origin=origin,
            settings=runtime_found.settings if runtime_found is not None else None,
            core=core,
            origins=MappingProxyType(origins),
            mounts=mounts,
            timeout_ms=timeout,
            config=trusted,
            live_config=live,
            config_file=cfg.file,
            run_name=run,
            run_folder=run_folder,
            problems=tuple(warnings),
        )

    def _runtime_name(
        self, flag: str | None, origin: Origin, core: CoreSettings
    ) -> tuple[str, Origin]:
        if flag:
            return flag, Origin("--runtime")
        if core.runtime:
            return core.runtime, origin
        return self.detect_runtime(), Origin("auto-detected")

    def _is_main(self, folder: str, given: bool | None, core: CoreSettings) -> bool:
        return given if given is not None else folder in core.main_groups

    def _unknown_keys(
        self, cfg: groupconfig.GroupConfig, runtime: str, cls: type | None
    ) -> list[Problem]:
        known = known_keys(CoreSettings) | known_keys(cls)
        unknown = [k for k in cfg.container if k not in known]
        if not unknown:
            return []
        others = self.registry.group_keys_of_others(runtime)
        problems = []
        for key in unknown:
            where = f"containerConfig.{key}"
            owners = sorted(n for n, keys in others.items() if key in keys)
            if len(owners) == 1:
                message = (
                    f'belongs to runtime "{owners[0]}", but this group runs on "{runtime}"; '
                    f'remove it or set "runtime": "{owners[0]}"'
                )
            elif owners:
                names = ", ".join(f'"{o}"' for o in owners)
                message = (
                    f'belongs to runtimes {names}, but this group runs on "{runtime}"; '
                    'remove it or set "runtime" to one of them'
                )
            else:
                message = f"unknown key; {suggest(key, known)}"
            problems.append(Problem(cfg.file, where, message))
        return problems

    def _host_mounts(
        self, plan: MountPlan, host_mounts: Sequence[HostMount], group: Group, core: CoreSettings
    ) -> tuple[MountPlan, list[str]]:
        if not host_mounts:
            return plan, []
        allowlist = Path(core.allowlist).expanduser()
        if not allowlist.is_absolute():
            allowlist = self.project.root / allowlist
        mounts: list[Mount] = list(plan.mounts)
        used = {m.container_path for m in mounts}
        notes: list[str] = []
        for hm in host_mounts:
            mount, reason = check_host_mount(
                hm.host,
                hm.container,
                hm.readonly,
                project=self.project,
                group=group,
                allowlist_path=allowlist,
            )
            if mount is not None and mount.container_path not in used:
                mounts.append(mount)
                used.add(mount.container_path)
            elif reason:
                notes.append(f"mount -v {hm.host}:{hm.container} refused: {reason}")
        return MountPlan(
            mounts=ordered(mounts), masks=plan.masks, rejected=plan.rejected, notes=plan.notes
        ), notes


def env_for_sandbox(
    core: CoreSettings, environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment configured for the sandbox: ``TZ`` as the host has it, the group's
    ``env`` entries (``NAME`` takes this host's value), then what a host passed (``-e``)."""
    env: dict[str, str] = {}
    tz = environ.get("TZ") or _host_timezone()
    if tz:
        env["TZ"] = tz
    for entry in core.env:
        key, sep, value = entry.partition("=")
        if sep:
            env[key] = value
        elif key in environ:
            env[key] = environ[key]
    if extra:
        env.update(extra)
    return env


def _host_timezone() -> str | None:
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None
