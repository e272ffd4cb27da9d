"""Declaring settings: :func:`setting` fields on a settings class, and reading the declaration.

A runtime declares its settings as a class of typed fields::

    @nc.settings_class
    class VibeSettings:
        cpus: int = nc.setting(2, env="VIBE_CPUS", key="cpus", validator=nc.between(1, 64),
                               help="Virtual CPUs of the group's VM.")

``env`` is the environment variable (also read from the project's ``.env``),
``key`` the ``containerConfig`` key a group may set (camelCase, as written on
disk), ``help`` one sentence shown in ``doctor``, the generated configuration
reference and the JSON Schema. :func:`settings_class` makes the class a frozen,
keyword-only :class:`~nanoclaw_runtimes_core.record.Record`; each field's
:class:`SettingInfo` is kept in its ``metadata``.
"""

from __future__ import annotations

import functools
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..record import Field as RecordField
from ..record import Record, field_types, is_record
from ..record import fields as record_fields
from .validators import Validator

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import dataclass_transform
    else:
        from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda fn: fn


T = TypeVar("T")

METADATA_KEY = "nanoclaw_setting"


class SettingsDeclarationError(TypeError):
    """A settings class breaks the declaration rules; the message says which field and the fix."""


class SettingInfo(Record):
    """Where a setting may come from and how it is checked."""

    env: str | None = None
    key: str | None = None
    help: str = ""
    validators: tuple[Validator, ...] = ()
    words: bool = False
    """A command line: a JSON string or an environment value is split into words like a shell
    would (no shell syntax); a JSON list is taken as the words."""


def setting(
    default: Any,
    *,
    help: str,
    env: str | None = None,
    key: str | None = None,
    validator: Validator | Sequence[Validator] | None = None,
    words: bool = False,
) -> Any:
    """Declare one setting of a settings class; see the module docstring.

    ``validator`` is a one-argument callable (or a list of them) raising
    ``ValueError`` with a message that says what is allowed, e.g.
    :func:`~nanoclaw_runtimes_core.settings.validators.between`. Defaults must
    be immutable: use a tuple, not a list.
    """
    if isinstance(default, (list, dict, set)):
        raise SettingsDeclarationError(
            "a setting's default must be immutable: use a tuple, not a list"
        )
    if not isinstance(help, str) or not help.strip():
        raise SettingsDeclarationError(
            "every setting needs help=: one sentence saying what it does"
        )
    if validator is None:
        checks: tuple[Validator, ...] = ()
    elif callable(validator):
        checks = (validator,)
    else:
        checks = tuple(validator)
    info = SettingInfo(env=env, key=key, help=help.strip(), validators=checks, words=words)
    return RecordField(default, metadata={METADATA_KEY: info})


def _check_values(self: Any) -> None:
    """Runs the one-argument validators when the class is built directly (tests, code)."""
    for name, spec in type(self).__fields__.items():
        info = spec.metadata.get(METADATA_KEY)
        value = self.__dict__[name]
        if info is None or value is None:
            continue
        for check in info.validators:
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None


def _with_checks(post: Callable[[Any], None] | None) -> Callable[[Any], None]:
    if post is None:
        return _check_values

    def post_init(self: Any) -> None:
        _check_values(self)
        post(self)

    return post_init


@dataclass_transform(kw_only_default=True, frozen_default=True)
def settings_class(cls: type[T]) -> type[T]:
    """Make ``cls`` a settings class: a frozen, keyword-only record of :func:`setting` fields
    (the class made anew with :class:`~nanoclaw_runtimes_core.record.Record` as a base)."""
    if not isinstance(cls, type):
        raise SettingsDeclarationError(f"@settings_class decorates a class, not {cls!r}")
    namespace = {
        k: v
        for k, v in cls.__dict__.items()
        if k not in ("__dict__", "__weakref__", "__annotate__", "__annotate_func__")
        and k != "__annotations_cache__"
    }
    namespace["__annotations__"] = dict(getattr(cls, "__annotations__", {}))
    namespace["__qualname__"] = cls.__qualname__
    namespace["__post_init__"] = _with_checks(getattr(cls, "__post_init__", None))
    bases = tuple(b for b in cls.__bases__ if b is not object)
    if not any(is_record(b) for b in bases):
        bases = (*bases, Record)
    made = types.new_class(cls.__name__, bases, {}, lambda ns: ns.update(namespace))
    _rebind_class_cells(made.__dict__.values(), cls, made)
    return typing.cast("type[T]", made)


def _rebind_class_cells(members: Any, old: type, new: type) -> None:
    """Point the ``__class__`` cells of the methods (``super()`` without arguments) at the new
    class, as the dataclasses module does for the classes it makes anew."""
    for member in members:
        if isinstance(member, (classmethod, staticmethod)):
            functions = [member.__func__]
        elif isinstance(member, property):
            functions = [f for f in (member.fget, member.fset, member.fdel) if f is not None]
        else:
            functions = [member]
        for function in functions:
            code = getattr(function, "__code__", None)
            closure = getattr(function, "__closure__", None)
            if code is None or closure is None or "__class__" not in code.co_freevars:
                continue
            cell = closure[code.co_freevars.index("__class__")]
            if cell.cell_contents is old:
                cell.cell_contents = new


class Field(Record):
    """One declared setting of a settings class."""

    name: str
    alias: str
    type: Any
    info: SettingInfo
    default: Any

    @property
    def where(self) -> str:
        """How the setting is named for users: ``VIBE_CPUS / containerConfig.cpus``."""
        names = [
            n
            for n in (self.info.env, f"containerConfig.{self.info.key}" if self.info.key else None)
            if n
        ]
        return " / ".join(names) or self.name


def fields_of(cls: type) -> tuple[Field, ...]:
    """The declared settings of ``cls``, checked once (see :func:`_fields_of`)."""
    return _fields_of(cls)


@functools.cache
def _fields_of(cls: type) -> tuple[Field, ...]:
    """The declared settings of ``cls``, checked once: annotations, types, unique names.

    Raises :class:`SettingsDeclarationError` naming the field and the fix.
    """
    from .values import check_supported

    if not is_record(cls):
        raise SettingsDeclarationError(
            f"{cls!r} is not a settings class; decorate it with "
            "@nanoclaw_runtimes_core.settings_class"
        )
    for name, value in vars(cls).items():
        if isinstance(value, RecordField):
            raise SettingsDeclarationError(
                f"{cls.__qualname__}.{name} has no type annotation; write `{name}: type = "
                "setting(...)`"
            )
    try:
        hints = field_types(cls)
    except Exception as exc:
        raise SettingsDeclarationError(
            f"settings class {cls.__qualname__}: a type annotation cannot be read ({exc})"
        ) from None
    found: list[Field] = []
    keys: set[str] = set()
    envs: set[str] = set()
    for name, spec in record_fields(cls).items():
        where = f"{cls.__qualname__}.{name}"
        info = spec.metadata.get(METADATA_KEY)
        if not isinstance(info, SettingInfo):
            raise SettingsDeclarationError(
                f"{where} is not declared with setting(); write "
                f"`{name}: type = nanoclaw_runtimes_core.setting(default, help=...)`"
            )
        t = hints[name]
        problem = check_supported(t, from_env=info.env is not None, words=info.words)
        if problem:
            raise SettingsDeclarationError(f"{where}: {problem}")
        if info.env is not None:
            if info.env in envs:
                raise SettingsDeclarationError(f"{where}: variable {info.env} is declared twice")
            envs.add(info.env)
        if info.key is not None:
            if info.key in keys:
                raise SettingsDeclarationError(f"{where}: key {info.key!r} is declared twice")
            keys.add(info.key)
        default = None if spec.required else spec.value()
        found.append(Field(name=name, alias=name, type=t, info=info, default=default))
    return tuple(found)


def known_keys(cls: type | None) -> frozenset[str]:
    """The ``containerConfig`` keys ``cls`` declares."""
    return frozenset(f.info.key for f in fields_of(cls) if f.info.key) if cls else frozenset()


def known_env(cls: type | None) -> frozenset[str]:
    """The environment variables ``cls`` declares."""
    return frozenset(f.info.env for f in fields_of(cls) if f.info.env) if cls else frozenset()
