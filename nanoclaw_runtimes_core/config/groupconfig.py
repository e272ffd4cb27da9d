"""A group's ``groups/{folder}/config.json``: read without following links, parsed strictly.

The file looks like::

    {"containerConfig": {"runtime": "vibe", "vibeImage": "dev.raw", "cpus": 4}}

It lives in the folder the sandbox sees read-write, so its bytes are never
trusted blindly: :mod:`.trust` decides which version is in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..digest import sha256_hex
from ..record import Record
from ..safefs import SafeDir, UnsafeEntry
from ..settings.problems import Problem, suggest
from . import jsonfile

CONFIG_FILE = "config.json"
CONTAINER_CONFIG = "containerConfig"
TOP_LEVEL_KEYS = frozenset({CONTAINER_CONFIG})
ABSENT = "absent"
"""The digest recorded for a group without a config file."""


def digest(data: bytes | None) -> str:
    """The sha256 of a config file's bytes, or :data:`ABSENT`."""
    return ABSENT if data is None else sha256_hex(data)


def read_live(group_path: Path) -> bytes | None:
    """The bytes of ``config.json`` in the group folder (None when there is none).

    Raises :class:`~nanoclaw_runtimes_core.safefs.UnsafeEntry` when it is a link, a
    FIFO, a device, a folder or larger than 1 MiB.
    """
    try:
        folder = SafeDir.open(group_path)
    except FileNotFoundError:
        return None
    with folder:
        return folder.read(CONFIG_FILE, jsonfile.MAX_BYTES)


class GroupConfig(Record):
    """The ``containerConfig`` object of a config file as written (camelCase keys), and the
    problems of its shape; keys are checked once the runtime is known."""

    file: str
    """How the file is named in messages: ``groups/dev/config.json``."""
    exists: bool
    container: Mapping[str, Any]
    problems: tuple[Problem, ...] = ()


def parse(data: bytes | None, *, file: str) -> GroupConfig:
    """Parse a config file's bytes (None: no file, an empty config)."""
    empty: Mapping[str, Any] = MappingProxyType({})
    if data is None:
        return GroupConfig(file=file, exists=False, container=empty)
    document, problems = jsonfile.parse(data, file)
    if document is None:
        return GroupConfig(file=file, exists=True, container=empty, problems=tuple(problems))
    if not isinstance(document, dict):
        problems.append(
            Problem(
                file,
                "",
                f'the top level must be an object like {{"{CONTAINER_CONFIG}": {{...}}}}, '
                f"got {jsonfile.kind(document)}",
            )
        )
        return GroupConfig(file=file, exists=True, container=empty, problems=tuple(problems))
    for key in document:
        if key not in TOP_LEVEL_KEYS and not key.startswith("$"):
            problems.append(Problem(file, key, f"unknown key; {suggest(key, TOP_LEVEL_KEYS)}"))
    container = document.get(CONTAINER_CONFIG)
    if container is None:
        container = {}
    elif not isinstance(container, dict):
        problems.append(
            Problem(file, CONTAINER_CONFIG, f"expected an object, got {jsonfile.kind(container)}")
        )
        container = {}
    return GroupConfig(
        file=file,
        exists=True,
        container=MappingProxyType(dict(container)),
        problems=tuple(problems),
    )


def unsafe_problem(exc: UnsafeEntry, file: str) -> GroupConfig:
    """The config of a group whose file cannot be read safely: one problem saying why."""
    return GroupConfig(
        file=file,
        exists=True,
        container=MappingProxyType({}),
        problems=(Problem(file, "", f"cannot be used: {exc}"),),
    )
