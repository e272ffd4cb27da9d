"""Finding, loading and calling runtime plugins.

Runtimes are found through the entry-point group ``nanoclaw_runtimes``; the
entry point's name is the runtime's name. A runtime's module is imported the
first time it is used, so a run imports just the runtime it runs on.
``NANOCLAW_RUNTIMES_LOAD=vibe,container`` restricts which installed runtimes
load (empty: none). A runtime that fails to load is listed with the reason and
never hides the others.

Runtimes are pluggy plugins. Each call goes to ONE runtime, so a runtime that is
a module of plainly marked functions (every hook known, each argument named as in
its hookspec, no wrappers) has its hooks called directly: pluggy, and the
``inspect`` and ``ast`` it loads, cost a run more than the rest of its imports
together. Any other plugin (an object, a wrapper, a name or argument pluggy
would refuse) is registered with pluggy, which checks it and explains what is
wrong exactly as before.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import hookspecs
from .errors import PluginError, RuntimeFailure, RuntimeNotFound, UserError
from .hookspecs import PROJECT_NAME
from .models import EngineStatus, ExecutionResult, StatsRow
from .record import Record, field

if TYPE_CHECKING:
    import pluggy

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
_IMPL_MARK = f"{PROJECT_NAME}_impl"
_PLAIN_OPTIONS = {"wrapper": False, "hookwrapper": False, "specname": None}
"""Hookimpl options a directly called hook must have (tryfirst, trylast and optionalhook
change nothing for a hook with one implementation and a specification)."""
_RESULTS: dict[str, tuple[tuple[type, ...], str]] = {
    "execute": ((ExecutionResult,), "an ExecutionResult (run_process returns one)"),
    "engine_status": ((EngineStatus, type(None)), "an EngineStatus"),
    "prepare": ((str, type(None)), "a one-line str or None"),
    "reset": ((list, tuple), "a list of str"),
    "stats": ((list, tuple), "a list of StatsRow"),
}


class RuntimeInfo(Record, frozen=False):
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


def _spec_arguments() -> dict[str, frozenset[str]]:
    """Each hookspec's argument names."""
    found = {}
    for name in HOOK_NAMES:
        code = getattr(hookspecs, name).__code__
        found[name] = frozenset(code.co_varnames[: code.co_argcount])
    return found


def _plain_impls(plugin: Any) -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]] | None:
    """The hooks of a module plugin that can be called directly, as ``{hook: (function,
    argument names)}``, exactly as pluggy would call them; None when pluggy must register the
    plugin (an object, a wrapper, an unknown hook, an argument the hookspec does not pass).

    Mirrors pluggy's discovery for modules: every plain function in the module's namespace
    carrying a ``nanoclaw_runtimes_impl`` dict is an implementation; its positional
    parameters without defaults are the arguments passed."""
    if not isinstance(plugin, types.ModuleType):
        return None
    specs = _spec_arguments()
    found: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {}
    for name, value in vars(plugin).items():
        if isinstance(value, (staticmethod, classmethod, types.MethodType)):
            inner = getattr(value, "__func__", None)
            if getattr(value, _IMPL_MARK, None) is not None or getattr(inner, _IMPL_MARK, None):
                return None  # a marked method: pluggy binds it
            continue
        if not isinstance(value, types.FunctionType):
            continue  # pluggy takes no other object as a hook either
        opts = getattr(value, _IMPL_MARK, None)
        if opts is None:
            continue
        if not isinstance(opts, dict) or name not in specs or hasattr(value, "__wrapped__"):
            return None
        if any(opts.get(k, v) != v for k, v in _PLAIN_OPTIONS.items()):
            return None
        code = value.__code__
        if "." in value.__qualname__.rsplit("<locals>.", 1)[-1]:
            return None  # a class's function: pluggy may drop its first parameter
        args = code.co_varnames[: code.co_argcount]
        if value.__defaults__:
            args = args[: -len(value.__defaults__)]
        if not set(args) <= specs[name]:
            return None
        found[name] = (value, args)
    return found


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Hook names the plugin defines without ``@hookimpl`` (an easy mistake to make)."""
    found = []
    for name in HOOK_NAMES:
        obj = getattr(plugin, name, None)
        if callable(obj) and not hasattr(obj, f"{PROJECT_NAME}_impl"):
            found.append(name)
    return found


def _explain_validation(name: str, dist: str, plugin: Any, exc: Exception) -> str:
    text = str(exc)
    for hook, args in _ARGUMENTS.items():
        if f"hook '{hook}'" in text:
            impl = getattr(plugin, hook, None)
            import inspect

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
        import difflib

        close = difflib.get_close_matches(hook, HOOK_NAMES, n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else f"; the hooks are {', '.join(HOOK_NAMES)}"
        )
        return f"runtime {name!r} (from {dist}): @hookimpl on {hook!r}, which is not a hook{hint}"
    return f"runtime {name!r} (from {dist}): {text}"


class Registry:
    """The runtimes, keyed by name; calls go to ONE runtime at a time."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._runtimes: dict[str, RuntimeInfo] = {}
        self._broken: dict[str, RuntimeInfo] = {}
        self._unloaded: dict[str, EntryPoint] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        self._direct: dict[str, dict[str, tuple[Callable[..., Any], tuple[str, ...]]]] = {}
        """The runtimes whose hooks are called directly (see the module docstring)."""
        self._scanned: tuple[set[str] | None] | None = None
        """The selection of the last entry-point load (None: none yet), for a rescan."""

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager of the runtimes that are not called directly (made on first
        use)."""
        if self._pm is None:
            import pluggy

            self._pm = pluggy.PluginManager(PROJECT_NAME)
            self._pm.add_hookspecs(hookspecs)
        return self._pm

    def _registered_as(self, plugin: Any) -> str | None:
        for name, info in self._runtimes.items():
            if info.plugin is plugin:
                return name
        return None

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
        already = self._registered_as(plugin)
        if already is not None:
            raise PluginError(
                f"runtime {name!r} (from {distribution}): the same plugin object is already "
                f"registered as {already!r}; give each runtime its own object"
            )
        unmarked = _unmarked_hooks(plugin)
        if unmarked:
            raise PluginError(
                f"runtime {name!r} (from {distribution}): {', '.join(unmarked)} "
                f"{'is' if len(unmarked) == 1 else 'are'} not marked with @hookimpl; decorate "
                "each hook with @nanoclaw_runtimes_core.hookimpl"
            )
        direct = _plain_impls(plugin)
        if direct is not None:
            hooks = tuple(sorted(direct))
        else:
            hooks = self._register_with_pluggy(name, plugin, distribution)
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
            self._forget(name, plugin)
            raise PluginError(
                f"runtime {name!r} (from {distribution}) implements no {missing[0]} hook; add "
                f"`@hookimpl def {missing[0]}{_ARGUMENTS[missing[0]]}`"
            )
        self._runtimes[name] = info
        if direct is not None:
            self._direct[name] = direct
        self._callers.clear()
        try:
            info.settings_class = self._settings_class(info)
        except BaseException:
            del self._runtimes[name]
            self._forget(name, plugin)
            self._callers.clear()
            raise
        return info

    def _register_with_pluggy(self, name: str, plugin: Any, distribution: str) -> tuple[str, ...]:
        """Register ``plugin`` with pluggy, which checks it; returns its hooks."""
        import pluggy

        pm = self.pm
        try:
            pm.register(plugin, name=name)
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            raise PluginError(_explain_validation(name, distribution, plugin, exc)) from None
        return tuple(sorted(c.name for c in pm.get_hookcallers(plugin) or []))

    def _forget(self, name: str, plugin: Any) -> None:
        direct = self._direct.pop(name, None)
        if direct is None and self._pm is not None and self._pm.is_registered(plugin):
            self._pm.unregister(plugin)

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

    def load_entry_points(
        self, selected: Iterable[str] | None = None, *, fresh: bool = False
    ) -> None:
        """Find every installed runtime (or only the ``selected`` names); only metadata is read,
        from the cache unless ``fresh``."""
        from .entrypoints import runtime_entry_points

        wanted = set(selected) if selected is not None else None
        self._scanned = (wanted,)
        for ep in runtime_entry_points(fresh=fresh):
            if wanted is not None and ep.name not in wanted:
                continue
            if ep.name in self._runtimes or ep.name in self._broken:
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
        if not self._knows(name) and self._scanned is not None:
            # The cached scan may predate an install: look again before saying it is missing.
            (wanted,) = self._scanned
            self.load_entry_points(wanted, fresh=True)
        if not self._knows(name):
            raise RuntimeNotFound(self._not_found_message(name))
        info = self._info(name)
        if info.error:
            raise PluginError(info.error)
        return info

    def _knows(self, name: str) -> bool:
        return name in self._runtimes or name in self._unloaded or name in self._broken

    def _not_found_message(self, name: str) -> str:
        installed = self.names()
        lines = [f"unknown runtime {name!r}"]
        lines.append("installed runtimes: " + (", ".join(installed) if installed else "none"))
        import difflib

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
            caller = self._caller(name, hook)
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

    def _caller(self, name: str, hook: str) -> Callable[..., Any]:
        """What calls ``hook`` of runtime ``name`` alone, with the arguments it declares."""
        direct = self._direct.get(name)
        if direct is None:
            others = [
                i.plugin for n, i in self._runtimes.items() if n != name and n not in self._direct
            ]
            caller: Callable[..., Any] = self.pm.subset_hook_caller(hook, remove_plugins=others)
            return caller
        if hook not in direct:
            return lambda **_kwargs: None  # as pluggy: a hook nobody implements returns None
        function, args = direct[hook]

        def call(**kwargs: Any) -> Any:
            return function(*[kwargs[a] for a in args])

        return call

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


_defaults: dict[tuple[str, ...] | None, Registry] = {}
_default: Registry | None = None
"""A registry that replaces every default one when set (tests register runtimes in it)."""


def default_registry(environ: Mapping[str, str] | None = None) -> Registry:
    """The process-wide registry of the installed runtimes ``NANOCLAW_RUNTIMES_LOAD`` selects
    in ``environ``, loaded on first use; one per selection, so a caller naming other runtimes
    never gets a registry made for an earlier caller's selection."""
    if _default is not None:
        return _default
    env = os.environ if environ is None else environ
    selected = env.get(LOAD_ENV)
    key = None if selected is None else tuple(s.strip() for s in selected.split(",") if s.strip())
    registry = _defaults.get(key)
    if registry is None:
        registry = Registry()
        registry.load_entry_points(key)
        _defaults[key] = registry
    return registry
