"""Immutable, keyword-only records: the value types of the core and of runtimes.

Every ``nanoclaw-runtimes run`` is a new process, so what its modules cost to
import is paid by every chat message. attrs and dataclasses generate and
compile an ``__init__``, ``__repr__`` and ``__eq__`` for each class at import
(measured: ~1.2 ms a class with attrs, plus ~60 ms to import attrs; a run built
about 50 of them). A :class:`Record` is declared the same way — typed class
attributes with defaults — but costs almost nothing to define (~0.03 ms): one
generic ``__init__`` reads the class's fields, collected once when the class
is made.

::

    class Mount(Record):
        host_path: Path
        container_path: str
        readonly: bool = True

    m = Mount(host_path=Path("/x"), container_path="/y")
    m2 = m.replace(readonly=False)

- fields are keyword-only (``class X(Record, kw_only=False)``: positional too, in
  declaration order; a subclass inherits this) and frozen (``class X(Record,
  frozen=False)``: assignable; as for dataclasses, a subclass says ``frozen=False``
  exactly when its parent does);
- ``field(default=..., factory=..., repr=..., metadata=...)`` declares a field
  with a per-record default, hidden from ``repr``, or carrying metadata;
- equality compares the class and every field; frozen records hash the same
  way, assignable ones are unhashable; records pickle and copy;
- ``__post_init__(self)``, when a class defines it, runs after the fields are
  set (a frozen record sets derived values with ``object.__setattr__``).

Type checkers see records as frozen, keyword-only dataclasses (PEP 681).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from reprlib import recursive_repr
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import dataclass_transform
    else:
        from typing_extensions import dataclass_transform

    # Only for type checkers: a bound written as a string makes typing compile it, and the
    # first compile() of a process initialises every AST type (~9 million instructions).
    R = TypeVar("R", bound="Record")
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda cls: cls


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The default of a field that has none (it must be given)."""


class FrozenError(AttributeError):
    """A record's fields cannot be changed; use :meth:`Record.replace`."""


class Field:
    """A field's declaration: its default (or a factory making one per record), whether
    ``repr`` shows it, and free-form ``metadata`` (settings keep their declaration there)."""

    __slots__ = ("default", "factory", "metadata", "name", "repr")

    def __init__(
        self,
        default: Any = MISSING,
        *,
        factory: Callable[[], Any] | None = None,
        repr: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if default is not MISSING and factory is not None:
            raise TypeError("a field takes a default or a factory, not both")
        self.name = ""
        self.default = default
        self.factory = factory
        self.repr = repr
        self.metadata: dict[str, Any] = metadata or {}

    @property
    def required(self) -> bool:
        """Whether the field has no default and must be given."""
        return self.default is MISSING and self.factory is None

    def value(self) -> Any:
        """The field's default for a new record (a factory is called each time)."""
        return self.factory() if self.factory is not None else self.default

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, factory={self.factory!r})"


def field(
    *,
    default: Any = MISSING,
    factory: Callable[[], Any] | None = None,
    repr: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Declare a field with a ``factory`` (a fresh value per record), hidden from ``repr``, or
    carrying ``metadata``; a plain default needs no ``field()``."""
    return Field(default, factory=factory, repr=repr, metadata=metadata)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(
        ("ClassVar", "typing.ClassVar", "t.ClassVar", "typing_extensions.ClassVar")
    )


def _own_annotations(cls: type) -> dict[str, Any]:
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063 - inspect is too slow to import
    if own is None and ("__annotate__" in cls.__dict__ or "__annotate_func__" in cls.__dict__):
        own = cls.__annotations__  # Python 3.14's lazy annotations
    return dict(own or {})


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field, Field))
class Record:
    """The base of every record; see the module docstring."""

    __fields__: ClassVar[dict[str, Field]] = {}
    __frozen__: ClassVar[bool] = True
    __kw_only__: ClassVar[bool] = True

    def __init_subclass__(
        cls, frozen: bool = True, kw_only: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        parent: type[Record] | None = None
        for base in cls.__mro__[1:]:
            if base is not Record and issubclass(base, Record):
                parent = base
                break
        if parent is not None and parent.__frozen__ != frozen:
            fix = (
                f"write class {cls.__name__}({parent.__name__}, frozen=False)"
                if not parent.__frozen__
                else f"drop frozen=False from class {cls.__name__}"
            )
            raise TypeError(
                f"record {cls.__qualname__} must be "
                f"{'frozen' if parent.__frozen__ else 'assignable'} like its parent "
                f"{parent.__qualname__}: {fix}"
            )
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(base.__dict__.get("__fields__", {}))
        for name, annotation in _own_annotations(cls).items():
            if _is_classvar(annotation):
                continue
            declared = cls.__dict__.get(name, MISSING)
            spec = declared if isinstance(declared, Field) else Field(declared)
            spec.name = name
            fields.pop(name, None)  # a redeclared field keeps its place at the end
            fields[name] = spec
            if name in cls.__dict__:
                delattr(cls, name)  # defaults live in __fields__, not as class attributes
        cls.__fields__ = fields
        cls.__frozen__ = frozen
        if kw_only is not None:
            cls.__kw_only__ = kw_only
        if "__eq__" not in cls.__dict__ and "__hash__" not in cls.__dict__:
            cls.__hash__ = Record.__hash__ if cls.__frozen__ else None  # type: ignore[assignment]

    def __init__(self, *args: Any, **values: Any) -> None:
        cls = type(self)
        specs = cls.__fields__
        if args:
            if cls.__kw_only__:
                raise TypeError(
                    f"{cls.__name__}() takes keyword arguments only (got {len(args)} positional)"
                )
            if len(args) > len(specs):
                raise TypeError(
                    f"{cls.__name__}() takes at most {len(specs)} arguments ({len(args)} given)"
                )
            for name, value in zip(specs, args, strict=False):
                if name in values:
                    raise TypeError(f"{cls.__name__}() got two values for {name!r}")
                values[name] = value
        own = self.__dict__
        for name, spec in specs.items():
            if name in values:
                own[name] = values.pop(name)
            elif spec.factory is not None:
                own[name] = spec.factory()
            elif spec.default is MISSING:
                raise TypeError(f"{cls.__name__}() missing the keyword argument {name!r}")
            else:
                own[name] = spec.default
        if values:
            unknown = ", ".join(sorted(values))
            raise TypeError(f"{cls.__name__}() got unknown keyword arguments: {unknown}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self).__frozen__:
            raise FrozenError(f"{type(self).__name__}.{name} cannot be changed; use .replace()")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if type(self).__frozen__:
            raise FrozenError(f"{type(self).__name__}.{name} cannot be deleted")
        object.__delattr__(self, name)

    def __record_values(self) -> tuple[Any, ...]:
        own = self.__dict__
        return tuple(own[name] for name in type(self).__fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__record_values() == other.__record_values()

    def __hash__(self) -> int:
        return hash((type(self), self.__record_values()))

    @recursive_repr()
    def __repr__(self) -> str:
        own = self.__dict__
        shown = ", ".join(
            f"{name}={own[name]!r}" for name, spec in type(self).__fields__.items() if spec.repr
        )
        return f"{type(self).__qualname__}({shown})"

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied (the record itself never changes)."""
        values = {name: self.__dict__[name] for name in type(self).__fields__}
        values.update(changes)
        return type(self)(**values)

    __replace__ = replace  # copy.replace (Python 3.13)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (nested records are left as they are; see :func:`asdict`)."""
        own = self.__dict__
        return {name: own[name] for name in type(self).__fields__}


def fields(cls: type[Record] | Record) -> dict[str, Field]:
    """A record class's (or record's) fields, in declaration order (parents' first)."""
    return dict(cls.__fields__)


def is_record(cls: Any) -> bool:
    """Whether ``cls`` is a record class (``tuple[int, ...]`` and other aliases are not)."""
    try:
        return isinstance(cls, type) and issubclass(cls, Record)
    except TypeError:
        return False


_TYPES_CACHE: dict[type, dict[str, Any]] = {}


def field_types(cls: type[Record]) -> dict[str, Any]:
    """The evaluated annotation of each field of record class ``cls`` (what
    ``typing.get_type_hints`` gives for them), computed once per class.

    Annotations written as strings (``from __future__ import annotations``) are evaluated
    with ``eval`` in their class's module: ``typing.get_type_hints`` would ``compile()``
    each, and a process's first ``compile()`` costs ~9 million instructions. A type that
    still holds a string (a forward reference such as ``tuple["Mount", ...]``) is left to
    ``typing.get_type_hints``.
    """
    found = _TYPES_CACHE.get(cls)
    if found is not None:
        return found
    found = {}
    owners = {}
    for klass in reversed(cls.__mro__):
        for name in _own_annotations(klass):
            owners[name] = klass
    for name in cls.__fields__:
        klass = owners[name]
        annotation = _own_annotations(klass)[name]
        if isinstance(annotation, str):
            module = sys.modules.get(klass.__module__)
            namespace = vars(module) if module is not None else {}
            try:
                annotation = eval(annotation, namespace, vars(klass))
            except Exception:
                return _hints_from_typing(cls)
        if _has_forward_reference(annotation):
            return _hints_from_typing(cls)
        found[name] = annotation
    _TYPES_CACHE[cls] = found
    return found


def _hints_from_typing(cls: type[Record]) -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(cls)
    found = {name: hints[name] for name in cls.__fields__}
    _TYPES_CACHE[cls] = found
    return found


def _has_forward_reference(annotation: Any) -> bool:
    import typing

    if isinstance(annotation, (str, typing.ForwardRef)):
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return False  # its strings are values, not names
    return any(_has_forward_reference(a) for a in typing.get_args(annotation))


def asdict(value: Any) -> Any:
    """``value`` with every record turned into a dict of its fields, recursively; tuples and
    lists become lists and dicts keep their keys (what ``json.dumps`` takes)."""
    if isinstance(value, Record):
        return {name: asdict(v) for name, v in value.to_dict().items()}
    if isinstance(value, (tuple, list)):
        return [asdict(v) for v in value]
    if isinstance(value, Mapping):
        return {k: asdict(v) for k, v in value.items()}
    return value
