"""Finding, loading and calling runtime plugins.

Runtimes are found through the entry-point group ``nanoclaw_runtimes``; the
entry point's name is the runtime's name. A runtime's module is imported the
first time it is used, so a run imports just the runtime it runs on.
``NANOCLAW_RUNTIMES_LOAD=vibe,container`` restricts which installed runtimes
load (empty: none). A runtime that fails to load is listed with the reason and
never hides the others.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy
from attrs import define, field

from . import hookspecs
from .errors import PluginError, RuntimeFailure, RuntimeNotFound, UserError
from .hookspecs import PROJECT_NAME
from .models import EngineStatus, ExecutionResult, StatsRow

if TYPE_CHECKING:
    from .entrypoints import RuntimeEntryPoint as EntryPoint

LOAD_ENV = "NANOCLAW_RUNTIMES_LOAD"

KNOWN_DISTRIBUTIONS = {
    "vibe": "nanoclaw-runtime-vibe",
    "tart": "nanoclaw-runtime-tart",
    "container": "nanoclaw-runtime-container",
}
"""Runtimes whose distributions we know, to tell the user what to pip install."""

AUTO_ORDER = ("container", "vibe", "tart")
"""Auto-detection order: the fastest ephemeral sandbox first, then the persistent VMs."""

HOOK_NAMES = ("runtime_settings", "engine_status", "prepare", "execute", "reset", "stats")
REQUIRED_HOOKS = ("execute",)
_ARGUMENTS = {
    "runtime_settings": "()",
    "engine_status": "(settings)",
    "prepare": "(request)",
    "execute": "(request)",
    "reset": "(request)",
    "stats": "(request)",
}
_RESULTS: dict[str, tuple[tuple[type, ...], str]] = {
    "execute": ((ExecutionResult,), "an ExecutionResult (run_process returns one)"),
    "engine_status": ((EngineStatus, type(None)), "an EngineStatus"),
    "prepare": ((str, type(None)), "a one-line str or None"),
    "reset": ((list, tuple), "a list of str"),
    "stats": ((list, tuple), "a list of StatsRow"),
}


@define(kw_only=True)
class RuntimeInfo:
    """One runtime: its name, where it comes from, what it implements, or why it is broken."""

    name: str
    distribution: str
    version: str
    module: str
    plugin: Any = field(repr=False, default=None)
    hooks: tuple[str, ...] = ()
    settings_class: type | None = None
    error: str | None = None


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "(unknown distribution)"


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Hook names the plugin defines without ``@hookimpl`` (an easy mistake to make)."""
    found = []
    for name in HOOK_NAMES:
        obj = getattr(plugin, name, None)
        if callable(obj) and not hasattr(obj, f"{PROJECT_NAME}_impl"):
            found.append(name)
    return found


def _explain_validation(
    name: str, dist: str, plugin: Any, exc: pluggy.PluginValidationError
) -> str:
    text = str(exc)
    for hook, args in _ARGUMENTS.items():
        if f"hook '{hook}'" in text:
            impl = getattr(plugin, hook, None)
            try:
                got = str(inspect.signature(impl)) if impl else "?"
            except (TypeError, ValueError):
                got = "?"
            return (
                f"runtime {name!r} (from {dist}): {hook}{got} has an argument the hook does not "
                f"pass; hook arguments must be named as in the hookspec: {hook}{args}"
            )
    if "unknown hook" in text:
        hook = text.split("'")[1] if "'" in text else "?"
        close = difflib.get_close_matches(hook, HOOK_NAMES, n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else f"; the hooks are {', '.join(HOOK_NAMES)}"
        )
        return f"runtime {name!r} (from {dist}): @hookimpl on {hook!r}, which is not a hook{hint}"
    return f"runtime {name!r} (from {dist}): {text}"


class Registry:
    """The runtimes, keyed by name; calls go to ONE runtime at a time."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._runtimes: dict[str, RuntimeInfo] = {}
        self._broken: dict[str, RuntimeInfo] = {}
        self._unloaded: dict[str, EntryPoint] = {}
        self._callers: dict[tuple[str, str], Any] = {}

    # ----------------------------------------------------------------- loading

    def register(
        self,
        name: str,
        plugin: Any,
        *,
        distribution: str = "(registered in process)",
        version: str = "",
        module: str | None = None,
    ) -> RuntimeInfo:
        """Register a runtime object or module under ``name``; raises PluginError saying what is
        wrong and how to fix it (a second claim of a name, a hook without ``@hookimpl``, a hook
        argument named differently from the hookspec, a bad settings class)."""
        if name in self._runtimes or name in self._unloaded:
            other = self._runtimes.get(name)
            who = other.distribution if other else _dist_name(self._unloaded[name])
            raise PluginError(
                f"runtime name {name!r} is claimed twice: by {who} and by {distribution} "
                f"({module or plugin!r}); uninstall one of them (pip uninstall ...)"
            )
        if self.pm.is_registered(plugin):
            raise PluginError(
                f"runtime {name!r} (from {distribution}): the same plugin object is already "
                f"registered as {self.pm.get_name(plugin)!r}; give each runtime its own object"
            )
        unmarked = _unmarked_hooks(plugin)
        if unmarked:
            raise PluginError(
                f"runtime {name!r} (from {distribution}): {', '.join(unmarked)} "
                f"{'is' if len(unmarked) == 1 else 'are'} not marked with @hookimpl; decorate "
                "each hook with @nanoclaw_runtimes_core.hookimpl"
            )
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(_explain_validation(name, distribution, plugin, exc)) from None
        hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or []))
        info = RuntimeInfo(
            name=name,
            distribution=distribution,
            version=version,
            module=module or str(getattr(plugin, "__name__", type(plugin).__name__)),
            plugin=plugin,
            hooks=hooks,
        )
        missing = [h for h in REQUIRED_HOOKS if h not in hooks]
        if missing:
            self.pm.unregister(plugin)
            raise PluginError(
                f"runtime {name!r} (from {distribution}) implements no {missing[0]} hook; add "
                f"`@hookimpl def {missing[0]}{_ARGUMENTS[missing[0]]}`"
            )
        self._runtimes[name] = info
        self._callers.clear()
        try:
            info.settings_class = self._settings_class(info)
        except BaseException:
            del self._runtimes[name]
            self.pm.unregister(plugin)
            self._callers.clear()
            raise
        return info

    def _settings_class(self, info: RuntimeInfo) -> type | None:
        from .settings.fields import SettingsDeclarationError, fields_of

        cls = self.call(info.name, "runtime_settings")
        if cls is None:
            return None
        if not isinstance(cls, type):
            raise PluginError(
                f"runtime {info.name!r} (from {info.distribution}): runtime_settings returned "
                f"{cls!r}; return the settings class itself"
            )
        try:
            fields_of(cls)
        except SettingsDeclarationError as exc:
            raise PluginError(f"runtime {info.name!r} (from {info.distribution}): {exc}") from None
        return cls

    def load_entry_points(self, selected: Iterable[str] | None = None) -> None:
        """Find every installed runtime (or only the ``selected`` names); only metadata is read."""
        from .entrypoints import runtime_entry_points

        wanted = set(selected) if selected is not None else None
        for ep in runtime_entry_points():
            if wanted is not None and ep.name not in wanted:
                continue
            first = self._unloaded.get(ep.name)
            if first is not None:
                if _dist_name(first) == _dist_name(ep):
                    continue  # one distribution seen twice on sys.path
                self._broken[ep.name] = RuntimeInfo(
                    name=ep.name,
                    distribution=f"{_dist_name(first)} and {_dist_name(ep)}",
                    version="",
                    module=ep.value,
                    error=f"runtime name {ep.name!r} is claimed by two distributions: "
                    f"{_dist_name(first)} ({first.value}) and {_dist_name(ep)} ({ep.value}); "
                    "uninstall one of them",
                )
                continue
            self._unloaded[ep.name] = ep

    def _load(self, name: str) -> RuntimeInfo:
        ep = self._unloaded.pop(name)
        dist = _dist_name(ep)
        version = ep.dist.version if ep.dist is not None else ""
        try:
            plugin = ep.load()
        except Exception as exc:
            from .settings.fields import SettingsDeclarationError

            if isinstance(exc, SettingsDeclarationError):
                reason = str(exc)
            else:
                reason = (
                    f"failed to load {ep.value}: {type(exc).__name__}: {exc}; reinstall {dist}, or "
                    f"set {LOAD_ENV} to load only the runtimes you need"
                )
            error = f"runtime {name!r} (from {dist}): {reason}"
        else:
            try:
                return self.register(
                    name, plugin, distribution=dist, version=version, module=ep.value
                )
            except UserError as exc:
                error = str(exc)
        broken = RuntimeInfo(
            name=name, distribution=dist, version=version, module=ep.value, error=error
        )
        self._broken[name] = broken
        return broken

    # ----------------------------------------------------------------- lookup

    def names(self) -> list[str]:
        """Every runtime name, loaded, broken or not loaded yet."""
        return sorted({*self._runtimes, *self._unloaded, *self._broken})

    def infos(self) -> list[RuntimeInfo]:
        """Every runtime, loading those not loaded yet; broken ones carry ``error``."""
        return [self._info(n) for n in self.names()]

    def _info(self, name: str) -> RuntimeInfo:
        if name in self._runtimes:
            return self._runtimes[name]
        if name in self._broken:
            return self._broken[name]
        return self._load(name)

    def get(self, name: str) -> RuntimeInfo:
        """The working runtime called ``name`` (loaded on first use); raises RuntimeNotFound or
        PluginError saying what to do."""
        if name not in self._runtimes and name not in self._unloaded and name not in self._broken:
            raise RuntimeNotFound(self._not_found_message(name))
        info = self._info(name)
        if info.error:
            raise PluginError(info.error)
        return info

    def _not_found_message(self, name: str) -> str:
        installed = self.names()
        lines = [f"unknown runtime {name!r}"]
        lines.append("installed runtimes: " + (", ".join(installed) if installed else "none"))
        close = difflib.get_close_matches(name, [*installed, *KNOWN_DISTRIBUTIONS], n=1)
        if close and close[0] != name:
            lines.append(f"did you mean {close[0]!r}?")
        if name in KNOWN_DISTRIBUTIONS:
            lines.append(f"install it with: pip install {KNOWN_DISTRIBUTIONS[name]}")
            if os.environ.get(LOAD_ENV) is not None:
                lines.append(f"(or it was left out by {LOAD_ENV}={os.environ[LOAD_ENV]!r})")
        return "\n".join(lines)

    # ----------------------------------------------------------------- calling

    def call(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` of runtime ``name`` only; an unexpected error or a result of the wrong
        type comes back as RuntimeFailure naming the runtime, its distribution and the hook."""
        info = self._runtimes.get(name) or self.get(name)
        caller = self._callers.get((name, hook))
        if caller is None:
            others = [i.plugin for n, i in self._runtimes.items() if n != name]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[(name, hook)] = caller
        try:
            result = caller(**kwargs)
        except (UserError, RuntimeFailure):
            raise
        except Exception as exc:
            raise RuntimeFailure(name, info.distribution, hook, exc) from exc
        expected = _RESULTS.get(hook)
        if expected and hook in info.hooks and not isinstance(result, expected[0]):
            wrong = TypeError(f"returned {type(result).__name__}; {hook} must return {expected[1]}")
            raise RuntimeFailure(name, info.distribution, hook, wrong)
        if hook == "stats" and any(not isinstance(r, StatsRow) for r in result or ()):
            raise RuntimeFailure(
                name, info.distribution, hook, TypeError("every row must be a StatsRow")
            )
        return result

    def implements(self, name: str, hook: str) -> bool:
        return hook in self.get(name).hooks

    def group_keys_of_others(self, name: str) -> Mapping[str, frozenset[str]]:
        """The ``containerConfig`` keys of every other working runtime (loads them)."""
        from .settings.fields import known_keys

        keys: dict[str, frozenset[str]] = {}
        for other in self.names():
            if other == name:
                continue
            try:
                keys[other] = known_keys(self.get(other).settings_class)
            except UserError:
                continue
        return keys


_default: Registry | None = None


def default_registry(environ: Mapping[str, str] | None = None) -> Registry:
    """The process-wide registry of installed runtimes, loaded on first use."""
    global _default
    if _default is None:
        env = os.environ if environ is None else environ
        selected = env.get(LOAD_ENV)
        registry = Registry()
        registry.load_entry_points(
            None if selected is None else [s.strip() for s in selected.split(",") if s.strip()]
        )
        _default = registry
    return _default
