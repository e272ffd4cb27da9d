"""Finding, loading and calling runtime plugins.

Runtimes are found through the entry-point group ``nanoclaw_runtimes``; the
entry point's name is the runtime's name. Loading happens once, lazily, on
first use. ``NANOCLAW_RUNTIMES_LOAD=vibe,container`` restricts which
installed runtimes load (empty: none), to bisect a misbehaving plugin.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from attrs import define, field

from . import hookspecs
from .errors import PluginError, RuntimeFailure, RuntimeNotFound, UserError
from .hookspecs import PROJECT_NAME

LOAD_ENV = "NANOCLAW_RUNTIMES_LOAD"

# Runtimes whose distributions we know, to tell the user what to pip install.
KNOWN_DISTRIBUTIONS = {
    "vibe": "nanoclaw-runtime-vibe",
    "tart": "nanoclaw-runtime-tart",
    "container": "nanoclaw-runtime-container",
}

# Auto-detection order: the fastest ephemeral sandbox first, then the persistent VMs.
AUTO_ORDER = ("container", "vibe", "tart")

HOOK_NAMES = ("runtime_settings", "engine_status", "prepare", "execute", "reset", "stats")


@define(kw_only=True)
class RuntimeInfo:
    """One loaded runtime: its name, where it comes from and what it implements."""

    name: str
    distribution: str
    version: str
    module: str
    plugin: Any = field(repr=False)
    hooks: tuple[str, ...] = ()
    settings_class: type | None = None


def _hook_names(pm: pluggy.PluginManager, plugin: Any) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(caller.name for caller in callers))


class Registry:
    """The loaded runtimes, keyed by name; calls go to ONE runtime at a time."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._runtimes: dict[str, RuntimeInfo] = {}
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
        """Register a runtime object or module under ``name``; refuses a second claim of a name."""
        if name in self._runtimes or name in self._unloaded:
            other = self._runtimes.get(name) or _unloaded_info(self._unloaded[name])
            raise PluginError(
                f"runtime name {name!r} is claimed twice: by {other.distribution} "
                f"({other.module}) and by {distribution} ({module or plugin!r}); "
                f"uninstall one of them (pip uninstall ...)"
            )
        if self.pm.is_registered(plugin):
            raise PluginError(
                f"runtime {name!r} (from {distribution}): the same plugin object is already "
                f"registered as {self.pm.get_name(plugin)!r}; give each runtime its own object"
            )
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(f"runtime {name!r} (from {distribution}): {exc}") from None
        info = RuntimeInfo(
            name=name,
            distribution=distribution,
            version=version,
            module=module or getattr(plugin, "__name__", type(plugin).__name__),
            plugin=plugin,
            hooks=_hook_names(self.pm, plugin),
        )
        self._runtimes[name] = info
        # Cached callers exclude only the runtimes known when they were built.
        self._callers.clear()
        try:
            info.settings_class = self.call(name, "runtime_settings")
        except BaseException:
            del self._runtimes[name]
            self.pm.unregister(plugin)
            self._callers.clear()
            raise
        return info

    def load_entry_points(self, selected: Iterable[str] | None = None) -> None:
        """Find every installed runtime (or only the ``selected`` names).

        Only the metadata is read here: a runtime's module is imported the first
        time it is used, so a run imports just the runtime it runs on.
        """
        wanted = set(selected) if selected is not None else None
        for ep in entry_points(group=PROJECT_NAME):
            if wanted is not None and ep.name not in wanted:
                continue
            first = self._unloaded.get(ep.name)
            if first is not None:
                if _dist_name(first) == _dist_name(ep):
                    continue  # one distribution seen twice on sys.path
                raise PluginError(
                    f"runtime name {ep.name!r} is claimed by two distributions: "
                    f"{_dist_name(first)} ({first.value}) and {_dist_name(ep)} ({ep.value}); "
                    "uninstall one of them"
                )
            if ep.name in self._runtimes:
                other = self._runtimes[ep.name]
                raise PluginError(
                    f"runtime name {ep.name!r} is claimed twice: by {other.distribution} "
                    f"({other.module}) and by {_dist_name(ep)} ({ep.value})"
                )
            self._unloaded[ep.name] = ep

    def _load(self, name: str) -> RuntimeInfo:
        ep = self._unloaded[name]
        dist = _dist_name(ep)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"runtime {name!r} (from {dist}) failed to load {ep.value}: "
                f"{type(exc).__name__}: {exc}; set {LOAD_ENV} to load only the runtimes "
                f"you need, or reinstall {dist}"
            ) from exc
        del self._unloaded[name]
        return self.register(
            name,
            plugin,
            distribution=dist,
            version=ep.dist.version if ep.dist else "",
            module=ep.value,
        )

    # ----------------------------------------------------------------- lookup

    def names(self) -> list[str]:
        """Every runtime name, loaded or not."""
        return sorted({*self._runtimes, *self._unloaded})

    def infos(self) -> list[RuntimeInfo]:
        """Every runtime, loading those not loaded yet."""
        return [self.get(n) for n in self.names()]

    def get(self, name: str) -> RuntimeInfo:
        """The runtime called ``name`` (loaded on first use), or a :class:`RuntimeNotFound`
        that says what to do."""
        info = self._runtimes.get(name)
        if info is not None:
            return info
        if name in self._unloaded:
            return self._load(name)
        raise RuntimeNotFound(self._not_found_message(name))

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
        """Call ``hook`` of runtime ``name`` only; wraps unexpected errors with its name."""
        info = self.get(name)
        caller = self._callers.get((name, hook))
        if caller is None:
            others = [i.plugin for n, i in self._runtimes.items() if n != name]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[(name, hook)] = caller
        try:
            return caller(**kwargs)
        except (UserError, RuntimeFailure):
            raise
        except Exception as exc:
            raise RuntimeFailure(name, info.distribution, hook, exc) from exc

    def implements(self, name: str, hook: str) -> bool:
        return hook in self.get(name).hooks

    def group_keys_of_others(self, name: str) -> Mapping[str, frozenset[str]]:
        """The ``containerConfig`` keys of every other runtime, loaded only when looked at
        (which happens only for a key the selected runtime does not know)."""
        return _OtherRuntimesKeys(self, name)


class _OtherRuntimesKeys(Mapping[str, frozenset[str]]):
    def __init__(self, registry: Registry, selected: str) -> None:
        self._registry, self._names = registry, [n for n in registry.names() if n != selected]

    def __getitem__(self, name: str) -> frozenset[str]:
        from .settings import known_keys

        try:
            cls = self._registry.get(name).settings_class
        except PluginError:
            return frozenset()  # a broken runtime is reported where it is used, not here
        return known_keys(cls) if cls is not None else frozenset()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist else "(unknown distribution)"


def _unloaded_info(ep: EntryPoint) -> RuntimeInfo:
    return RuntimeInfo(
        name=ep.name, distribution=_dist_name(ep), version="", module=ep.value, plugin=None
    )


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
