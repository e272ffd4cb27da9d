"""Validators for settings: each takes the value and raises ``ValueError`` saying what is allowed.

A validator is any one-argument callable (a ``schema`` attribute, a dict, adds its
constraints to the generated JSON Schema)::

    def even(value: int) -> None:
        if value % 2:
            raise ValueError(f"must be even, got {value}")

It is called only for values that were set (never for the default) and after
the type was checked. The message is shown after the key or variable, so write
it as the rest of a sentence ("must be at least 1, got 0").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .problems import show

Validator = Callable[[Any], None]

ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
"""A variable's name (compiled when an entry is checked)."""


def between(minimum: float, maximum: float, unit: str = "") -> Validator:
    """The value must lie in ``[minimum, maximum]``."""
    suffix = f" {unit}" if unit else ""

    def check(value: float) -> None:
        if not minimum <= value <= maximum:
            raise ValueError(f"must be from {minimum} to {maximum}{suffix}, got {value}")

    check.schema = {"minimum": minimum, "maximum": maximum}  # type: ignore[attr-defined]
    return check


def at_least(minimum: float, unit: str = "") -> Validator:
    """The value must be ``>= minimum``."""
    suffix = f" {unit}" if unit else ""

    def check(value: float) -> None:
        if value < minimum:
            raise ValueError(f"must be at least {minimum}{suffix}, got {value}")

    check.schema = {"minimum": minimum}  # type: ignore[attr-defined]
    return check


def one_of(*choices: Any) -> Validator:
    """The value must be one of ``choices``."""
    allowed = ", ".join(show(c) for c in choices)

    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {allowed}, got {show(value)}")

    check.schema = {"enum": list(choices)}  # type: ignore[attr-defined]
    return check


def non_empty(value: str) -> None:
    """A string must not be empty or blank."""
    if not value.strip():
        raise ValueError("must not be empty")


def plain_file_name(value: str) -> None:
    """A file name inside a folder of ours: no folders, no ``..``, not hidden, printable."""
    if (
        not value
        or "/" in value
        or "\\" in value
        or value.startswith(".")
        or any(ord(c) < 32 or c == "\x7f" for c in value)
    ):
        raise ValueError(
            f"must be a plain file name such as base.raw (no folders, no '..', not hidden), "
            f"got {show(value)}"
        )


def image_reference(value: str) -> None:
    """An image reference such as ``nanoclaw-runtimes-agent:latest`` or ``ghcr.io/me/agent:1``."""
    if not value or value.startswith("-") or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(
            f"must be an image reference such as nanoclaw-runtimes-agent:latest or "
            f"ghcr.io/me/agent:1, got {show(value)}"
        )


def env_entries(value: Sequence[str]) -> None:
    """``NAME=VALUE`` (set it) or ``NAME`` (pass the host's value through) entries."""
    for entry in value:
        name = entry.split("=", 1)[0]
        if not re.fullmatch(ENV_NAME, name):
            raise ValueError(
                "each entry must be NAME=VALUE (set it) or NAME (pass this host's value "
                f"through), NAME made of letters, digits and _; got {show(entry)}"
            )


def command_words(value: Sequence[str]) -> None:
    """A command line as words: at least one, the first not empty."""
    if not value or not value[0]:
        raise ValueError("must name a command (a list of words, the program first)")


def split_words(text: str) -> tuple[str, ...]:
    """A command line written as one string, split like a shell would split it (no shell
    syntax: no variables, no pipes). Raises ValueError for an unbalanced quote."""
    import shlex

    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"is not a valid command line ({exc}): {show(text)}") from None
