"""Declaring settings: :func:`setting` fields on an attrs class, and reading the declaration.

A runtime declares its settings as a frozen attrs class::

    @nc.settings_class
    class VibeSettings:
        cpus: int = nc.setting(2, env="VIBE_CPUS", key="cpus", validator=nc.between(1, 64),
                               help="Virtual CPUs of the group's VM.")

``env`` is the environment variable (also read from the project's ``.env``),
``key`` the ``containerConfig`` key a group may set (camelCase, as written on
disk), ``help`` one sentence shown in ``doctor``, the generated configuration
reference and the JSON Schema.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from .validators import Validator

T = TypeVar("T")

METADATA_KEY = "nanoclaw_setting"


class SettingsDeclarationError(TypeError):
    """A settings class breaks the declaration rules; the message says which field and the fix."""


@attrs.frozen(kw_only=True)
class SettingInfo:
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
    """Declare one setting as an attrs field; see the module docstring.

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
    return attrs.field(
        default=default,
        validator=_attrs_validator(checks) if checks else None,
        metadata={METADATA_KEY: info},
    )


def _attrs_validator(checks: tuple[Validator, ...]) -> Callable[[Any, Any, Any], None]:
    """Runs the one-argument validators when the class is built directly (tests, code)."""

    def run(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None:
            return
        for check in checks:
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{attribute.name}: {exc}") from None

    return run


def settings_class(cls: type[T]) -> type[T]:
    """Make ``cls`` a settings class: a frozen, keyword-only attrs class."""
    try:
        return attrs.define(frozen=True, kw_only=True)(cls)
    except attrs.exceptions.UnannotatedAttributeError as exc:
        raise SettingsDeclarationError(
            f"settings class {cls.__qualname__}: {exc} Write each field as "
            "`name: type = setting(...)`."
        ) from None


@attrs.frozen
class Field:
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

    if not isinstance(cls, type) or not attrs.has(cls):
        raise SettingsDeclarationError(
            f"{cls!r} is not a settings class; decorate it with "
            "@nanoclaw_runtimes_core.settings_class (a frozen attrs class)"
        )
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise SettingsDeclarationError(
            f"settings class {cls.__qualname__}: a type annotation cannot be read ({exc})"
        ) from None
    found: list[Field] = []
    keys: set[str] = set()
    envs: set[str] = set()
    for a in attrs.fields(cls):
        if not a.init:
            continue
        where = f"{cls.__qualname__}.{a.name}"
        info = a.metadata.get(METADATA_KEY)
        if not isinstance(info, SettingInfo):
            raise SettingsDeclarationError(
                f"{where} is not declared with setting(); write "
                f"`{a.name}: type = nanoclaw_runtimes_core.setting(default, help=...)`"
            )
        if a.name not in hints:
            raise SettingsDeclarationError(
                f"{where} has no type annotation; write `{a.name}: type = setting(...)`"
            )
        t = hints[a.name]
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
        default = a.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else None
        found.append(
            Field(name=a.name, alias=a.alias or a.name, type=t, info=info, default=default)
        )
    return tuple(found)


def known_keys(cls: type | None) -> frozenset[str]:
    """The ``containerConfig`` keys ``cls`` declares."""
    return frozenset(f.info.key for f in fields_of(cls) if f.info.key) if cls else frozenset()


def known_env(cls: type | None) -> frozenset[str]:
    """The environment variables ``cls`` declares."""
    return frozenset(f.info.env for f in fields_of(cls) if f.info.env) if cls else frozenset()
