"""Declaring settings, and resolving them strictly from group config, environment and ``.env``.

A runtime (and the core itself) declares its settings as an attrs class whose
fields are made with :func:`setting`::

    @attrs.define(frozen=True, kw_only=True)
    class VibeSettings:
        cpus: int = setting(2, env="VIBE_CPUS", key="cpus", validator=positive,
                            help="Virtual CPUs per VM.")

:func:`resolve_settings` fills such a class with, for each field, the first of:
the group's ``containerConfig`` key > the process environment > the project's
``.env`` > the default. Values are never coerced silently: ``"4"`` is not 4,
``"false"`` is not True, 1.9 is not 1 and ``true`` is not an integer. Every
problem is reported at once, each naming where the bad value came from.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

import attrs

from .errors import ConfigError

if typing.TYPE_CHECKING:
    import cattrs

__all__ = [
    "AdditionalMount",
    "CommonGroupKeys",
    "CoreSettings",
    "Problem",
    "SettingDoc",
    "SettingInfo",
    "SettingsResult",
    "at_least",
    "describe_settings",
    "get_converter",
    "known_env",
    "known_keys",
    "non_empty",
    "one_of",
    "positive",
    "raise_problems",
    "resolve_settings",
    "setting",
    "suggest",
    "try_resolve_settings",
]

T = TypeVar("T")

METADATA_KEY = "nanoclaw_setting"
"""The attrs metadata key under which :func:`setting` stores its :class:`SettingInfo`."""

ENVIRONMENT = "environment"
"""The source name used in messages for values taken from the process environment."""


# --------------------------------------------------------------------------- declaring


@attrs.frozen(kw_only=True)
class SettingInfo:
    """Where a setting may come from: an environment variable, a ``containerConfig`` key, both."""

    env: str | None = None
    key: str | None = None
    help: str = ""


def setting(
    default: Any,
    *,
    env: str | None = None,
    key: str | None = None,
    help: str = "",
    validator: Callable[[Any, attrs.Attribute, Any], Any] | None = None,
) -> Any:
    """Declare one setting as an attrs field.

    ``env`` is the environment variable (also read from the project's ``.env``),
    ``key`` the ``containerConfig`` key a group may set (camelCase, as written
    on disk), ``help`` one sentence for the docs and ``doctor``. ``validator``
    is an ordinary attrs validator; it should raise ``ValueError`` with a
    message that says what is allowed (see :func:`at_least`, :func:`one_of`).
    Mutable defaults are not allowed: use a tuple, not a list.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable (use a tuple, not a list)")
    return attrs.field(
        default=default,
        validator=validator,
        metadata={METADATA_KEY: SettingInfo(env=env, key=key, help=help)},
    )


# --------------------------------------------------------------------------- validators


def at_least(minimum: int | float, unit: str = "") -> Callable[[Any, attrs.Attribute, Any], None]:
    """A validator: the value (when not None) must be >= ``minimum``."""
    suffix = f" {unit}" if unit else ""

    def check(_instance: Any, _attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}{suffix}, got {value}")

    return check


def _positive(_instance: Any, _attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


positive = _positive
"""A validator: the value (when not None) must be greater than 0."""


def non_empty(_instance: Any, _attribute: attrs.Attribute, value: Any) -> None:
    """A validator: a string (when not None) must not be empty or blank."""
    if value is not None and not str(value).strip():
        raise ValueError("must not be empty")


def one_of(*choices: Any) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A validator: the value (when not None) must be one of ``choices``."""
    allowed = ", ".join(_show(c) for c in choices)

    def check(_instance: Any, _attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and value not in choices:
            raise ValueError(f"must be one of {allowed}, got {_show(value)}")

    return check


# --------------------------------------------------------------------------- problems


@attrs.frozen
class Problem:
    """One invalid value: where it came from (a file or "environment"), which key, what is wrong."""

    source: str
    location: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.location) if p]
        return ": ".join([*parts, self.message])


def raise_problems(*groups: Iterable[Problem | str]) -> None:
    """Raise one :class:`ConfigError` with every problem, if there is any.

    Problems found twice for the same source and location (e.g. a common key
    checked by the core and by a runtime) are reported once.
    """
    seen: set[tuple[str, str]] = set()
    lines: list[str] = []
    for problems in groups:
        for p in problems:
            if isinstance(p, Problem):
                ident = (p.source, p.location)
                if p.location and ident in seen:
                    continue
                seen.add(ident)
            line = str(p)
            if line not in lines:
                lines.append(line)
    if lines:
        raise ConfigError(lines)


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``did you mean "x"?`` for the nearest candidate, else the list of known names."""
    known = sorted(set(candidates))
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in known}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if close:
        return f'did you mean "{close[0]}"?'
    if not known:
        return "no keys are allowed here"
    return "known keys: " + ", ".join(known)


def _show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (strings quoted), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StrictTypeError(ValueError):
    """A value of the wrong JSON type; the message is the whole explanation."""


# --------------------------------------------------------------------------- strict JSON conversion

_TYPE_WORDS: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _json_names(cls: type) -> dict[str, str]:
    """Attribute name -> the key used in JSON for an attrs class (see :func:`get_converter`)."""
    names = {}
    for a in attrs.fields(cls):
        info = a.metadata.get(METADATA_KEY)
        names[a.name] = info.key if isinstance(info, SettingInfo) and info.key else _camel(a.name)
    return names


def _strict_str(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise StrictTypeError(f"expected a string, got {_show(value)}")
    return value


def _strict_int(value: Any, _t: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrictTypeError(f"expected an integer, got {_show(value)}")
    return value


def _strict_float(value: Any, _t: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StrictTypeError(f"expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise StrictTypeError(f"expected a finite number, got {value}")
    return float(value)


def _strict_bool(value: Any, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise StrictTypeError(f"expected true or false, got {_show(value)}")
    return value


def _is_sequence(t: Any) -> bool:
    origin = typing.get_origin(t)
    if origin is list:
        return True
    if origin is tuple:
        args = typing.get_args(t)
        return len(args) == 2 and args[1] is Ellipsis
    return False


def _type_word(t: Any) -> str:
    """How a type is named in messages: "an integer", "a list of strings", "an object"."""
    if t in _TYPE_WORDS:
        return _TYPE_WORDS[t]
    if _is_sequence(t):
        inner = _type_word(typing.get_args(t)[0])
        plural = {
            "a string": "strings",
            "an integer": "integers",
            "a number": "numbers",
            "an object": "objects",
        }
        return "a list of " + plural.get(inner, "values")
    if _is_optional(t):
        return _type_word(_strip_optional(t)) + " or null"
    if typing.get_origin(t) is Literal:
        return "one of " + ", ".join(_show(c) for c in typing.get_args(t))
    if attrs.has(t):
        return "an object"
    return getattr(t, "__name__", str(t))


def _sequence_hook(t: Any) -> Callable[[Any, Any], Any]:
    elem = typing.get_args(t)[0]
    build = tuple if typing.get_origin(t) is tuple else list

    def structure(value: Any, _t: Any) -> Any:
        from cattrs.errors import IterableValidationError, IterableValidationNote

        if not isinstance(value, (list, tuple)):
            raise StrictTypeError(f"expected {_type_word(t)}, got {_show(value)}")
        out, errors = [], []
        for i, item in enumerate(value):
            try:
                out.append(get_converter().structure(item, elem))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring item @ index {i}", i, elem)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return build(out)

    return structure


def _literal_hook(t: Any) -> Callable[[Any, Any], Any]:
    choices = typing.get_args(t)

    def structure(value: Any, _t: Any) -> Any:
        # `True in (1,)` is true in Python: compare the type too.
        for c in choices:
            if type(c) is type(value) and c == value:
                return c
        raise StrictTypeError(f"expected {_type_word(t)}, got {_show(value)}")

    return structure


def _attrs_hook(cls: type) -> Callable[[Any, Any], Any]:
    from cattrs.gen import make_dict_structure_fn, override

    converter = get_converter()
    renames = {name: override(rename=key) for name, key in _json_names(cls).items()}
    inner = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True, **renames
    )

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, dict):
            raise StrictTypeError(f"expected an object, got {_show(value)}")
        return inner(value, t)

    return structure


@functools.cache
def get_converter() -> cattrs.Converter:
    """The strict converter for JSON values: str, int, float, bool, Literal, lists/tuples, attrs
    classes (camelCase keys, unknown keys rejected). It never converts between types. Built on
    first use, so that runs whose config holds no values do not import cattrs."""
    import cattrs

    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook_factory(_is_sequence, _sequence_hook)
    conv.register_structure_hook_factory(lambda t: typing.get_origin(t) is Literal, _literal_hook)
    conv.register_structure_hook_factory(attrs.has, _attrs_hook)
    return conv


def structure_problems(
    exc: BaseException, *, source: str, path: str, known_extra: Iterable[str] = ()
) -> list[Problem]:
    """Flatten an exception raised by the :func:`get_converter` converter into one
    :class:`Problem` per bad value.

    ``path`` is the JSON path of the value that was structured
    (``containerConfig.additionalMounts``); paths below it use the JSON keys as
    the user wrote them (``containerConfig.additionalMounts[1].hostPath``).
    """
    out: list[Problem] = []
    _walk(exc, path, source, out)
    return out


def _note(exc: BaseException, kind: type) -> Any:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, kind):
            return note
    return None


def _walk(exc: BaseException, path: str, source: str, out: list[Problem]) -> None:
    from cattrs.errors import (
        AttributeValidationNote,
        ClassValidationError,
        ForbiddenExtraKeysError,
        IterableValidationError,
        IterableValidationNote,
    )

    if isinstance(exc, ClassValidationError):
        names = _json_names(exc.cl)
        for sub in exc.exceptions:
            note = _note(sub, AttributeValidationNote)
            if note is not None:
                key = names.get(note.name, note.name)
                if isinstance(sub, KeyError):
                    word = _type_word(note.type)
                    out.append(Problem(source, f"{path}.{key}", f"missing: {word} is required"))
                else:
                    _walk(sub, f"{path}.{key}", source, out)
            elif isinstance(sub, ForbiddenExtraKeysError):
                for extra in sorted(sub.extra_fields):
                    hint = suggest(extra, names.values())
                    out.append(Problem(source, f"{path}.{extra}", f"unknown key; {hint}"))
            else:
                _walk(sub, path, source, out)
    elif isinstance(exc, IterableValidationError):
        for sub in exc.exceptions:
            note = _note(sub, IterableValidationNote)
            sub_path = f"{path}[{note.index}]" if note is not None else path
            _walk(sub, sub_path, source, out)
    elif isinstance(exc, (ValueError, TypeError)):
        out.append(Problem(source, path, str(exc)))
    else:
        out.append(Problem(source, path, f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- environment strings

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _is_optional(t: Any) -> bool:
    return _is_union(t) and type(None) in typing.get_args(t)


def _is_union(t: Any) -> bool:
    origin = typing.get_origin(t)
    return origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType)


def _strip_optional(t: Any) -> Any:
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if len(args) != 1:
        raise TypeError(f"unsupported union type {t!r}: use X | None")
    return args[0]


def parse_env_value(text: str, t: Any) -> Any:
    """Parse an environment variable's text as type ``t``, strictly.

    Integers are decimal (``-3``, ``4``; not ``4.0`` or ``0x4``); booleans are
    ``1/0, true/false, yes/no, on/off`` in any case; a list/tuple of strings is
    comma-separated (``a, b``; an empty text gives an empty list).
    Raises :class:`StrictTypeError` with the reason.
    """
    if _is_optional(t):
        return parse_env_value(text, _strip_optional(t))
    if t is str:
        return text
    stripped = text.strip()
    if t is bool:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise StrictTypeError(
            f"expected a boolean (1/0, true/false, yes/no, on/off), got {_show(text)}"
        )
    if t is int:
        if not _INT_RE.fullmatch(stripped):
            raise StrictTypeError(f"expected an integer, got {_show(text)}")
        return int(stripped)
    if t is float:
        if not _FLOAT_RE.fullmatch(stripped):
            raise StrictTypeError(f"expected a number, got {_show(text)}")
        return float(stripped)
    if typing.get_origin(t) is Literal:
        for choice in typing.get_args(t):
            if isinstance(choice, str) and choice == stripped:
                return choice
        raise StrictTypeError(f"expected {_type_word(t)}, got {_show(text)}")
    if _is_sequence(t):
        elem = typing.get_args(t)[0]
        items = [part.strip() for part in text.split(",")]
        parsed = [parse_env_value(item, elem) for item in items if item]
        return tuple(parsed) if typing.get_origin(t) is tuple else parsed
    raise TypeError(f"type {t!r} cannot be read from an environment variable")


def _env_supported(t: Any) -> bool:
    if _is_optional(t):
        return _env_supported(_strip_optional(t))
    if t in (str, int, float, bool):
        return True
    if typing.get_origin(t) is Literal:
        return all(isinstance(c, str) for c in typing.get_args(t))
    if _is_sequence(t):
        return typing.get_args(t)[0] in (str, int, float, bool)
    return False


# --------------------------------------------------------------------------- class plans


@attrs.frozen
class _Field:
    attribute: attrs.Attribute
    type: Any
    info: SettingInfo


@functools.cache
def _plan(cls: type) -> tuple[_Field, ...]:
    """The declared settings of ``cls``, checked once: types supported, names unique."""
    if not attrs.has(cls):
        raise TypeError(f"{cls!r} is not an attrs class; declare settings with @attrs.define")
    hints = typing.get_type_hints(cls)
    fields, keys, envs = [], set(), set()
    for a in attrs.fields(cls):
        if not a.init:
            continue
        info = a.metadata.get(METADATA_KEY) or SettingInfo()
        t = hints.get(a.name, a.type)
        where = f"{cls.__qualname__}.{a.name}"
        if info.env is not None:
            if not _env_supported(t):
                raise TypeError(f"{where}: type {t!r} cannot be read from {info.env}")
            if info.env in envs:
                raise TypeError(f"{where}: environment variable {info.env} is declared twice")
            envs.add(info.env)
        if info.key is not None:
            if info.key in keys:
                raise TypeError(f"{where}: key {info.key!r} is declared twice")
            keys.add(info.key)
        fields.append(_Field(attribute=a, type=t, info=info))
    return tuple(fields)


@attrs.frozen(kw_only=True)
class SettingDoc:
    """One declared setting, for documentation and ``doctor``."""

    name: str
    env: str | None
    key: str | None
    default: Any
    type: str
    help: str


def describe_settings(cls: type) -> list[SettingDoc]:
    """The settings ``cls`` declares, in declaration order."""
    docs = []
    for f in _plan(cls):
        default = f.attribute.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else None
        docs.append(
            SettingDoc(
                name=f.attribute.name,
                env=f.info.env,
                key=f.info.key,
                default=None if default is attrs.NOTHING else default,
                type=_type_word(f.type),
                help=f.info.help,
            )
        )
    return docs


def known_keys(cls: type) -> frozenset[str]:
    """The ``containerConfig`` keys ``cls`` declares (``{"cpus", "vibeImage"}``)."""
    return frozenset(f.info.key for f in _plan(cls) if f.info.key)


def known_env(cls: type) -> frozenset[str]:
    """The environment variables ``cls`` declares."""
    return frozenset(f.info.env for f in _plan(cls) if f.info.env)


# --------------------------------------------------------------------------- resolving


@attrs.frozen
class SettingsResult:
    """What :func:`try_resolve_settings` found: the settings (bad values replaced by their
    defaults; None if even that failed) and every problem."""

    settings: Any
    problems: tuple[Problem, ...]
    sources: Mapping[str, str] = attrs.field(factory=dict)
    """Field name -> where its value came from ("groups/dev/config.json", "environment", ".env")."""


def try_resolve_settings(
    cls: type[T],
    *,
    group_values: Mapping[str, Any] | None,
    group_file: str,
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
    dotenv_file: str = ".env",
    group_path: str = "containerConfig",
) -> SettingsResult:
    """Resolve every setting of ``cls`` and collect problems instead of raising.

    For each field: the group's key (a JSON ``null`` counts as not set) >
    ``environ`` > ``dotenv`` (an empty value counts as not set) > the default.
    A value that fails conversion or validation is reported and the default is
    used in its place, so callers can carry on and report everything at once.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    origins: dict[str, tuple[str, str]] = {}
    for f in _plan(cls):
        name, info = f.attribute.name, f.info
        before = len(problems)
        if info.key and group_values and group_values.get(info.key) is not None:
            origin = (group_file, f"{group_path}.{info.key}" if group_path else info.key)
            try:
                value = get_converter().structure(group_values[info.key], f.type)
            except Exception as exc:
                problems.extend(structure_problems(exc, source=origin[0], path=origin[1]))
        elif info.env and environ.get(info.env):
            origin = (ENVIRONMENT, info.env)
            value = _from_env(environ[info.env], f.type, origin, problems)
        elif info.env and info.env in dotenv and dotenv[info.env] != "":
            origin = (dotenv_file, info.env)
            text = dotenv[info.env]
            if text is None:
                problems.append(Problem(*origin, f"has no value; write {info.env}=VALUE"))
            else:
                value = _from_env(text, f.type, origin, problems)
        else:
            continue
        if len(problems) == before:  # else keep the default; the problem is recorded
            values[name] = value
            origins[name] = origin

    _validate(cls, values, origins, problems)
    aliases = {f.attribute.name: f.attribute.alias or f.attribute.name for f in _plan(cls)}
    try:
        settings = cls(**{aliases[name]: value for name, value in values.items()})
    except (ValueError, TypeError) as exc:
        problems.append(Problem(cls.__qualname__, "", str(exc)))
        settings = None
    sources = {name: origin[0] for name, origin in origins.items()}
    return SettingsResult(settings=settings, problems=tuple(problems), sources=sources)


def _from_env(text: str, t: Any, origin: tuple[str, str], problems: list[Problem]) -> Any:
    try:
        return parse_env_value(text, t)
    except StrictTypeError as exc:
        problems.append(Problem(*origin, str(exc)))
        return None  # unused: the caller sees the recorded problem


def _validate(
    cls: type,
    values: dict[str, Any],
    origins: dict[str, tuple[str, str]],
    problems: list[Problem],
) -> None:
    """Run each field's validator on its own, so every invalid value is reported (attrs stops at
    the first). Invalid values are removed from ``values`` so the default takes their place."""
    plan = _plan(cls)
    full = {}
    for f in plan:
        default = f.attribute.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else None
        full[f.attribute.name] = values.get(f.attribute.name, default)
    view = types.SimpleNamespace(**full)  # lets a validator look at other fields
    for f in plan:
        a = f.attribute
        if a.validator is None or a.name not in values:
            continue
        try:
            a.validator(view, a, values[a.name])
        except (ValueError, TypeError) as exc:
            source, location = origins[a.name]
            problems.append(Problem(source, location, str(exc)))
            del values[a.name]


def resolve_settings(
    cls: type[T],
    *,
    group_values: Mapping[str, Any] | None,
    group_file: str,
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
    dotenv_file: str = ".env",
) -> T:
    """Resolve the settings of ``cls``: group key > environment > ``.env`` > default.

    ``group_values`` is the group's ``containerConfig`` object (or None) and
    ``group_file`` its path as shown to the user (``groups/dev/config.json``);
    ``dotenv_file`` is how ``.env`` is named in messages. Raises
    :class:`~nanoclaw_runtimes_core.errors.ConfigError` listing every problem,
    one line each, e.g. ``environment: VIBE_CPUS: expected an integer, got "x"``.
    """
    result = try_resolve_settings(
        cls,
        group_values=group_values,
        group_file=group_file,
        environ=environ,
        dotenv=dotenv,
        dotenv_file=dotenv_file,
    )
    raise_problems(result.problems)
    return result.settings


# --------------------------------------------------------------------------- core settings

DEFAULT_TIMEOUT_MS = 1_800_000
DEFAULT_ALLOWLIST = "~/.config/nanoclaw/mount-allowlist.json"


@attrs.define(frozen=True, kw_only=True)
class CoreSettings:
    """Settings of the core itself, common to every runtime."""

    runtime: str | None = setting(
        None,
        env="CONTAINER_RUNTIME",
        key="runtime",
        validator=non_empty,
        help="Runtime for groups that do not name one; unset: the first usable installed runtime.",
    )
    max_concurrent: int = setting(
        5,
        env="MAX_CONCURRENT_CONTAINERS",
        validator=at_least(1),
        help="How many sandboxes may run at once across all groups.",
    )
    timeout: int = setting(
        DEFAULT_TIMEOUT_MS,
        env="CONTAINER_TIMEOUT",
        key="timeout",
        validator=positive,
        help="Idle timeout of a run in milliseconds; each output block restarts it.",
    )
    allowlist_path: str = setting(
        DEFAULT_ALLOWLIST,
        env="NANOCLAW_MOUNT_ALLOWLIST",
        validator=non_empty,
        help="The mount allowlist that additionalMounts are checked against.",
    )
    debug: bool = setting(
        False,
        env="NANOCLAW_DEBUG",
        help="Log full input, arguments, mounts and output of every run (secrets redacted).",
    )

    @property
    def log_level(self) -> str:
        """``"debug"`` when :attr:`debug` is set, else ``"info"``."""
        return "debug" if self.debug else "info"


@attrs.define(frozen=True, kw_only=True)
class AdditionalMount:
    """One entry of ``containerConfig.additionalMounts`` as the group wrote it (unvalidated)."""

    host_path: str
    container_path: str | None = None
    readonly: bool = True


@attrs.define(frozen=True, kw_only=True)
class CommonGroupKeys:
    """The ``containerConfig`` keys the core knows, whatever the runtime; None when not set."""

    runtime: str | None = setting(
        None, key="runtime", validator=non_empty, help="The runtime this group runs on."
    )
    cpus: int | None = setting(
        None, key="cpus", validator=at_least(1), help="Virtual CPUs for this group's sandbox."
    )
    ram: int | None = setting(
        None, key="ram", validator=at_least(64, "MB"), help="Memory in MB for the sandbox."
    )
    timeout: int | None = setting(
        None, key="timeout", validator=positive, help="Idle timeout in milliseconds."
    )
    additional_mounts: tuple[AdditionalMount, ...] = setting(
        (),
        key="additionalMounts",
        help="Extra host folders, checked against the mount allowlist.",
    )


COMMON_KEYS: frozenset[str] = known_keys(CommonGroupKeys)
"""``runtime``, ``cpus``, ``ram``, ``timeout``, ``additionalMounts``."""
