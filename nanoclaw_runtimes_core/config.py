"""Reading a group's ``groups/{folder}/config.json`` and the project's ``.env``.

A group's file looks like::

    {"containerConfig": {"runtime": "vibe", "vibeImage": "dev.raw", "cpus": 4}}

:func:`load_group_config` parses it, checks the keys every runtime shares
(``runtime``, ``cpus``, ``ram``, ``timeout``, ``additionalMounts``) and keeps the
whole ``containerConfig`` object in :attr:`GroupConfig.raw` for the selected
runtime's own keys. Once the runtime is known, :func:`resolve_group_settings`
checks the remaining keys (:func:`check_group_keys`) and resolves the runtime's
settings, reporting every problem of the file, the environment and ``.env``
in one :class:`~nanoclaw_runtimes_core.errors.ConfigError`.

Files are re-read whenever they change (size, modification time or inode).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from .groups import group_path_text, resolve_group
from .models import Project
from .settings import (
    COMMON_KEYS,
    AdditionalMount,
    CommonGroupKeys,
    Problem,
    SettingsResult,
    known_keys,
    raise_problems,
    suggest,
    try_resolve_settings,
)

__all__ = [
    "CONFIG_FILE",
    "CONTAINER_CONFIG",
    "DOTENV_FILE",
    "AdditionalMount",
    "FileCache",
    "GroupConfig",
    "check_group_keys",
    "dotenv_problems",
    "load_dotenv_values",
    "load_group_config",
    "parse_group_config",
    "resolve_group_settings",
    "try_resolve_group_settings",
]

T = TypeVar("T")

CONFIG_FILE = "config.json"
CONTAINER_CONFIG = "containerConfig"
TOP_LEVEL_KEYS = frozenset({CONTAINER_CONFIG})
DOTENV_FILE = ".env"


# --------------------------------------------------------------------------- file cache


class FileCache:
    """Values computed from files, recomputed as soon as a file changes.

    An entry is keyed on the file's path and its (mtime_ns, size, inode,
    ctime_ns), so an edit in place or a replacement by rename is seen at the
    next call. A missing file is never cached.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, ...], Any]] = {}

    def get(self, path: Path, load: Callable[[Path], T]) -> T:
        """``load(path)``, or its cached result if the file has not changed since."""
        signature = _signature(path)
        with self._lock:
            entry = self._entries.get(path)
        if signature is not None and entry is not None and entry[0] == signature:
            return entry[1]
        value = load(path)
        with self._lock:
            if signature is None:
                self._entries.pop(path, None)
            else:
                self._entries[path] = (signature, value)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


_group_cache = FileCache()
_dotenv_cache = FileCache()


# --------------------------------------------------------------------------- .env


def load_dotenv_values(root: Path) -> dict[str, str | None]:
    """The variables of ``root/.env`` (python-dotenv syntax, no interpolation), or ``{}``.

    ``os.environ`` is not changed. A variable written without ``=`` has the
    value None. A fresh dict is returned on each call.
    """
    path = Path(root) / DOTENV_FILE
    values = _dotenv_cache.get(path, _read_dotenv)
    return dict(values)


def _read_dotenv(path: Path) -> Mapping[str, str | None]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # only when there is a .env: it costs start-up time

    return MappingProxyType(dict(dotenv_values(path, interpolate=False)))


def dotenv_problems(root: Path) -> list[Problem]:
    """Lines of ``root/.env`` that python-dotenv could not parse (it skips them silently)."""
    path = Path(root) / DOTENV_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(DOTENV_FILE, "", f"cannot be read: {exc}")]
    from dotenv.parser import parse_stream

    problems = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = binding.original.string.splitlines()[0] if binding.original.string else ""
            problems.append(
                Problem(
                    DOTENV_FILE,
                    f"line {binding.original.line}",
                    f"cannot parse {first.strip()!r}; write NAME=value (quote values with spaces)",
                )
            )
    return problems


# --------------------------------------------------------------------------- group config


@attrs.define(frozen=True, kw_only=True)
class GroupConfig:
    """A group's ``config.json``: the common keys, typed, and the whole ``containerConfig``.

    ``problems`` lists what is wrong with the file (empty when it is valid);
    a bad value is left at None here and reported there.
    """

    folder: str
    path: Path
    file: str
    """The file as named in messages: ``groups/dev/config.json``."""
    exists: bool = False
    runtime: str | None = None
    cpus: int | None = None
    ram: int | None = None
    timeout: int | None = None
    additional_mounts: tuple[AdditionalMount, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}))
    """The ``containerConfig`` object as written (camelCase keys), for runtime keys."""
    problems: tuple[Problem, ...] = ()


def load_group_config(project: Project, folder: str, *, strict: bool = True) -> GroupConfig:
    """Read ``groups/{folder}/config.json`` (a missing file is an empty config).

    With ``strict`` (the default) any problem raises
    :class:`~nanoclaw_runtimes_core.errors.ConfigError` listing them all; with
    ``strict=False`` they are returned in :attr:`GroupConfig.problems` so the
    caller can report them together with later ones (see
    :func:`resolve_group_settings`). A bad group name raises
    :class:`~nanoclaw_runtimes_core.errors.UserError` either way.
    """
    group = resolve_group(project, folder)
    path = group.path / CONFIG_FILE
    config = _group_cache.get(path, lambda p: parse_group_config(p, folder=folder))
    if strict:
        raise_problems(config.problems)
    return config


def parse_group_config(path: Path, *, folder: str) -> GroupConfig:
    """Parse one group config file, uncached, collecting every problem."""
    file = group_path_text(folder, CONFIG_FILE)
    empty = GroupConfig(folder=folder, path=path, file=file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return empty
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return attrs.evolve(
            empty, exists=True, problems=(Problem(file, "", f"cannot read: {reason}"),)
        )
    problems: list[Problem] = []
    document = _parse_json(data, file, problems)
    if problems:
        return attrs.evolve(empty, exists=True, problems=tuple(problems))
    _report_duplicates(document, "", file, problems)
    if not isinstance(document, dict):
        problems.append(
            Problem(
                file,
                "",
                f"the top level must be an object like "
                f'{{"{CONTAINER_CONFIG}": {{...}}}}, got {_kind(document)}',
            )
        )
        return attrs.evolve(empty, exists=True, problems=tuple(problems))
    for key in document:
        if key not in TOP_LEVEL_KEYS and not key.startswith("$"):
            problems.append(Problem(file, key, f"unknown key; {suggest(key, TOP_LEVEL_KEYS)}"))
    container = document.get(CONTAINER_CONFIG)
    if container is None:
        container = {}
    elif not isinstance(container, dict):
        problems.append(
            Problem(file, CONTAINER_CONFIG, f"expected an object, got {_kind(container)}")
        )
        container = {}
    common = try_resolve_settings(
        CommonGroupKeys, group_values=container, group_file=file, environ={}, dotenv={}
    )
    problems.extend(common.problems)
    keys = common.settings if common.settings is not None else CommonGroupKeys()
    return GroupConfig(
        folder=folder,
        path=path,
        file=file,
        exists=True,
        runtime=keys.runtime,
        cpus=keys.cpus,
        ram=keys.ram,
        timeout=keys.timeout,
        additional_mounts=keys.additional_mounts,
        raw=MappingProxyType(container),
        problems=tuple(problems),
    )


class _JsonObject(dict):
    """A parsed JSON object that remembers keys written more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    dupes = []
    for key, value in pairs:
        if key in obj and key not in dupes:
            dupes.append(key)
        obj[key] = value
    obj.duplicates = tuple(dupes)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write a number")


def _parse_json(data: bytes, file: str, problems: list[Problem]) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, "", f"is not UTF-8 text (bad byte at offset {exc.start})"))
        return None
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        problems.append(Problem(file, where, f"invalid JSON: {exc.msg}"))
    except ValueError as exc:
        problems.append(Problem(file, "", f"invalid JSON: {exc}"))
    return None


def _report_duplicates(value: Any, path: str, file: str, problems: list[Problem]) -> None:
    if isinstance(value, _JsonObject):
        for key in value.duplicates:
            where = f"{path}.{key}" if path else key
            problems.append(
                Problem(
                    file, where, "duplicate key; only the last one would count, remove the other"
                )
            )
        for key, item in value.items():
            _report_duplicates(item, f"{path}.{key}" if path else key, file, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _report_duplicates(item, f"{path}[{i}]", file, problems)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


# --------------------------------------------------------------------------- runtime keys


def check_group_keys(
    config: GroupConfig,
    runtime_name: str,
    runtime_keys: Iterable[str],
    other_runtimes_keys: Mapping[str, Iterable[str]],
) -> list[Problem]:
    """Report every ``containerConfig`` key that is neither common nor the selected runtime's.

    A key another installed runtime declares is named as that runtime's, with
    the fix; any other unknown key gets the nearest known key suggested.
    """
    known = set(COMMON_KEYS) | set(runtime_keys)
    problems = []
    for key in config.raw:
        if key in known:
            continue
        where = f"{CONTAINER_CONFIG}.{key}"
        owners = sorted(
            name
            for name, keys in other_runtimes_keys.items()
            if name != runtime_name and key in set(keys)
        )
        if len(owners) == 1:
            message = (
                f'belongs to runtime "{owners[0]}", but this group runs on "{runtime_name}"; '
                f'remove it or set "runtime": "{owners[0]}"'
            )
        elif owners:
            names = ", ".join(f'"{o}"' for o in owners)
            message = (
                f'belongs to runtimes {names}, but this group runs on "{runtime_name}"; '
                f'remove it or set "runtime" to one of them'
            )
        else:
            message = f"unknown key; {suggest(key, known)}"
        problems.append(Problem(config.file, where, message))
    return problems


def try_resolve_group_settings(
    config: GroupConfig,
    cls: type | None,
    *,
    runtime_name: str,
    other_runtimes_keys: Mapping[str, Iterable[str]],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
    dotenv_file: str = DOTENV_FILE,
) -> SettingsResult:
    """Like :func:`resolve_group_settings`, but returns the problems instead of raising.

    The problems include the file's own (:attr:`GroupConfig.problems`) and the
    unknown keys, so several results can be merged with
    :func:`~nanoclaw_runtimes_core.settings.raise_problems`. ``cls`` None stands
    for a runtime without settings (then only common keys are allowed).
    """
    if cls is None:  # a runtime without settings
        result = SettingsResult(settings=None, problems=())
        own_keys: frozenset[str] = frozenset()
    else:
        result = try_resolve_settings(
            cls,
            group_values=config.raw,
            group_file=config.file,
            environ=environ,
            dotenv=dotenv,
            dotenv_file=dotenv_file,
        )
        own_keys = known_keys(cls)
    unknown = check_group_keys(config, runtime_name, own_keys, other_runtimes_keys)
    problems = (*config.problems, *unknown, *result.problems)
    return attrs.evolve(result, problems=problems)


def resolve_group_settings(
    config: GroupConfig,
    cls: type[T] | None,
    *,
    runtime_name: str,
    other_runtimes_keys: Mapping[str, Iterable[str]],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
    dotenv_file: str = DOTENV_FILE,
) -> T | None:
    """The selected runtime's settings for this group: group key > environment > ``.env`` > default.

    Raises one :class:`~nanoclaw_runtimes_core.errors.ConfigError` with every
    problem: those of the file, unknown or foreign keys, and bad values in the
    file, the environment and ``.env``.
    """
    result = try_resolve_group_settings(
        config,
        cls,
        runtime_name=runtime_name,
        other_runtimes_keys=other_runtimes_keys,
        environ=environ,
        dotenv=dotenv,
        dotenv_file=dotenv_file,
    )
    raise_problems(result.problems)
    return result.settings
