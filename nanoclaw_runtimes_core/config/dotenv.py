"""The project's ``.env``: ``NAME=value`` lines (python-dotenv syntax), every bad line reported."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from ..record import Record
from ..safefs import SafeDir, UnsafeEntry
from ..settings.problems import Problem

DOTENV_FILE = ".env"
MAX_BYTES = 1 << 20


class DotEnv(Record, kw_only=False):
    """The variables of a project's ``.env`` (a line without ``=`` gives None) and its problems."""

    values: Mapping[str, str | None]
    problems: tuple[Problem, ...] = ()


EMPTY = DotEnv(MappingProxyType({}))


def read_dotenv(root: Path) -> DotEnv:
    """Read ``root/.env``; a missing file is empty. Never raises for a bad file: an unreadable
    file, a non-UTF-8 file, a folder or FIFO in its place and each unparsable line is a problem
    naming ``.env`` and the line."""
    try:
        with SafeDir.open(root) as folder:
            data = folder.read(DOTENV_FILE, MAX_BYTES)
    except UnsafeEntry as exc:
        return DotEnv(MappingProxyType({}), (Problem(DOTENV_FILE, "", f"cannot be used: {exc}"),))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return DotEnv(
            MappingProxyType({}), (Problem(DOTENV_FILE, "", f"cannot be read: {reason}"),)
        )
    if data is None:
        return EMPTY
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return DotEnv(
            MappingProxyType({}),
            (Problem(DOTENV_FILE, "", f"is not UTF-8 text (bad byte at offset {exc.start})"),),
        )
    from dotenv.parser import parse_stream  # only when there is a .env: it costs start-up time

    values: dict[str, str | None] = {}
    problems: list[Problem] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = binding.original.string.splitlines()[0] if binding.original.string else ""
            problems.append(
                Problem(
                    DOTENV_FILE,
                    f"line {binding.original.line}",
                    f"cannot parse {first.strip()!r}: write NAME=value and close every quote",
                )
            )
        elif binding.key is not None:
            if "\x00" in (binding.value or ""):
                problems.append(
                    Problem(DOTENV_FILE, binding.key, "must not contain a NUL character")
                )
                continue
            values[binding.key] = binding.value
    return DotEnv(MappingProxyType(values), tuple(problems))
