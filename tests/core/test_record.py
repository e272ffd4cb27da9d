"""Records: keyword-only, frozen value types declared like dataclasses, built without code
generation."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import ClassVar, Generic, Literal, TypeVar

import pytest

from nanoclaw_runtimes_core.record import (
    Field,
    FrozenError,
    Record,
    asdict,
    field,
    field_types,
    fields,
    is_record,
)

S = TypeVar("S")


class Point(Record):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    scale: ClassVar[int] = 10


class Bag(Record):
    items: list[int] = field(factory=list)
    secret: str = field(default="", repr=False)


class Counter(Record, frozen=False):
    count: int = 0


class SubCounter(Counter, frozen=False):
    step: int = 1


class Pair(Record, kw_only=False):
    left: str
    right: str = ""


class Child(Point):
    z: int = 5
    y: int = 7  # redeclared: a new default, and moved after the parent's fields


class Checked(Record):
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        object.__setattr__(self, "span", self.high - self.low)


class Boxed(Record, Generic[S]):
    value: S


class Node(Record, frozen=False):
    name: str
    next: Node | None = None


class Holder(Record):
    points: tuple[Point, ...] = ()
    mode: Literal["a", "b"] = "a"
    where: Path | None = None


def test_fields_are_keyword_only_with_defaults_and_required_ones() -> None:
    p = Point(x=1)
    assert (p.x, p.y, p.tags) == (1, 0, ())
    with pytest.raises(TypeError, match="keyword arguments only"):
        Point(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing the keyword argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown keyword arguments: q, r"):
        Point(x=1, q=2, r=3)  # type: ignore[call-arg]


def test_class_variables_are_not_fields() -> None:
    assert list(fields(Point)) == ["x", "y", "tags"]
    assert Point.scale == 10
    assert Point(x=1).scale == 10


def test_a_factory_makes_a_fresh_default_per_record() -> None:
    a, b = Bag(), Bag()
    a.items.append(1)
    assert b.items == []
    with pytest.raises(TypeError, match="a default or a factory"):
        Field(1, factory=list)


def test_records_are_frozen_and_replace_makes_a_changed_copy() -> None:
    p = Point(x=1, y=2)
    with pytest.raises(FrozenError, match=r"Point.x cannot be changed; use .replace\(\)"):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y
    q = p.replace(y=5)
    assert (p.y, q.y, q.x) == (2, 5, 1)
    with pytest.raises(TypeError, match="unknown keyword arguments: nope"):
        p.replace(nope=1)


def test_assignable_records_and_their_subclasses() -> None:
    c = Counter()
    c.count += 1
    assert c.count == 1
    s = SubCounter()
    s.step = 3
    assert (s.count, s.step) == (0, 3)
    with pytest.raises(TypeError, match="unhashable"):
        hash(c)


def test_a_subclass_is_frozen_or_assignable_like_its_parent() -> None:
    with pytest.raises(TypeError, match=r"assignable like its parent Counter: write class Odd\("):

        class Odd(Counter):  # type: ignore[misc]
            pass

    with pytest.raises(TypeError, match="frozen like its parent Point: drop frozen=False"):

        class Loose(Point, frozen=False):  # type: ignore[misc]
            pass


def test_positional_construction_when_asked_for() -> None:
    assert Pair("a", "b") == Pair(left="a", right="b")
    assert Pair("a").right == ""
    with pytest.raises(TypeError, match="at most 2 arguments"):
        Pair("a", "b", "c")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="two values for 'left'"):
        Pair("a", left="b")  # type: ignore[misc]


def test_equality_and_hashing_follow_the_class_and_every_field() -> None:
    assert Point(x=1, y=2) == Point(x=1, y=2)
    assert Point(x=1, y=2) != Point(x=1, y=3)
    assert Point(x=1) != Child(x=1)  # another class is never equal
    assert Point(x=1) != (1, 0, ())
    assert hash(Point(x=1, tags=("a",))) == hash(Point(x=1, tags=("a",)))
    assert len({Point(x=1), Point(x=1), Point(x=2)}) == 2


def test_subclasses_add_fields_after_their_parents_and_may_redeclare_one() -> None:
    c = Child(x=1)
    assert list(fields(Child)) == ["x", "tags", "z", "y"]
    assert (c.y, c.z) == (7, 5)
    assert Point(x=1).y == 0  # the parent's default is unchanged


def test_repr_shows_the_fields_but_not_the_hidden_ones() -> None:
    assert repr(Point(x=1, tags=("a",))) == "Point(x=1, y=0, tags=('a',))"
    assert repr(Bag(secret="hunter2")) == "Bag(items=[])"
    loop = Node(name="a")
    loop.next = loop
    assert repr(loop) == "Node(name='a', next=...)"


def test_post_init_runs_after_the_fields_and_again_on_replace() -> None:
    c = Checked(low=1, high=4)
    assert c.span == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="low 5 is above high 4"):
        c.replace(low=5)


def test_records_pickle_and_copy() -> None:
    p = Point(x=1, tags=("a",))
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.copy(p) == p
    deep = copy.deepcopy(Bag(items=[1, 2]))
    assert deep.items == [1, 2]
    restored = pickle.loads(pickle.dumps(Counter(count=4)))
    restored.count = 5
    assert restored.count == 5


def test_generic_records_are_subscripted_and_built() -> None:
    boxed = Boxed[int](value=3)
    assert boxed.value == 3
    assert type(boxed) is Boxed


def test_to_dict_is_flat_and_asdict_recursive() -> None:
    h = Holder(points=(Point(x=1),))
    assert h.to_dict() == {"points": (Point(x=1),), "mode": "a", "where": None}
    assert asdict(h) == {"points": [{"x": 1, "y": 0, "tags": []}], "mode": "a", "where": None}
    assert asdict({"k": (Point(x=2),)}) == {"k": [{"x": 2, "y": 0, "tags": []}]}


def test_is_record_tells_record_classes_from_other_types() -> None:
    assert is_record(Point)
    assert not is_record(Point(x=1))
    assert not is_record(tuple[Point, ...])
    assert not is_record(int)
    assert not is_record("Point")


def test_field_types_evaluates_annotations_written_as_text() -> None:
    assert field_types(Point) == {"x": int, "y": int, "tags": tuple[str, ...]}
    types = field_types(Holder)
    assert types["points"] == tuple[Point, ...]
    assert types["mode"] == Literal["a", "b"]
    assert types["where"] == Path | None
    assert field_types(Child)["z"] is int


class Quoted(Record):
    points: tuple["Point", ...] = ()  # noqa: UP037 - a forward reference inside the text


def test_field_types_leaves_a_quoted_name_inside_a_type_to_typing() -> None:
    assert field_types(Quoted) == {"points": tuple[Point, ...]}
    assert field_types(Node)["next"] == Node | None


def test_field_types_says_which_name_is_unknown() -> None:
    class Local(Record):
        other: Missing | None = None  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(NameError, match="Missing"):
        field_types(Local)
