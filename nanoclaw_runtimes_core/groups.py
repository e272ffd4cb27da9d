"""Group folders: the naming rules of the NanoClaw contract and where each group lives.

A group lives in ``groups/{folder}``. ``folder`` must match
``^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$``, must not be ``global`` (the shared
folder every group sees), and its resolved path must stay inside ``groups/``:
a symlink that leads elsewhere, or onto another group's folder, is refused.
A group folder that is a symlink is refused. The group named ``main`` is the
main group, with extra privileges.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import UserError
from .models import Group, Project

__all__ = [
    "FOLDER_RULE",
    "GLOBAL_FOLDER",
    "MAIN_FOLDER",
    "check_folder_name",
    "group_path_text",
    "list_groups",
    "resolve_group",
]

FOLDER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FOLDER_RULE = (
    "a group name is 1 to 64 letters, digits, '_' or '-', starting with a letter or digit "
    "(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$), and is not 'global'"
)
GLOBAL_FOLDER = "global"
MAIN_FOLDER = "main"


def check_folder_name(folder: str) -> None:
    """Raise :class:`UserError` saying what is wrong with ``folder`` as a group name."""
    problem = _name_problem(folder)
    if problem:
        raise UserError(f"invalid group name {folder!r}: {problem}; {FOLDER_RULE}")


def _name_problem(folder: str) -> str | None:
    if not isinstance(folder, str) or folder == "":
        return "it is empty"
    if folder.lower() == GLOBAL_FOLDER:
        return "'global' is the folder shared by every group, not a group"
    if len(folder) > 64:
        return f"it is {len(folder)} characters long, the limit is 64"
    if not re.fullmatch(r"[A-Za-z0-9]", folder[0]):
        return f"it starts with {folder[0]!r}"
    if not FOLDER_PATTERN.fullmatch(folder):
        bad = next(c for c in folder if not re.fullmatch(r"[A-Za-z0-9_-]", c))
        return f"it contains {bad!r}"
    return None


def resolve_group(project: Project, folder: str, *, must_exist: bool = False) -> Group:
    """The group ``folder`` of ``project``, after checking the contract's folder rules.

    The folder need not exist yet (it is created on first use) unless
    ``must_exist`` is set. Raises :class:`UserError` naming the problem and the
    rule: a bad name, ``global``, or a path that resolves outside ``groups/``.
    """
    check_folder_name(folder)
    groups_dir = project.groups_dir
    path = groups_dir / folder
    try:
        st: os.stat_result | None = os.lstat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        # A valid name has no separator and no dot, so only a symlink can lead elsewhere.
        raise UserError(_symlink_problem(groups_dir, folder))
    if st is None and must_exist:
        raise UserError(f"group {folder!r}: no folder {path}; create it or check the name")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise UserError(f"group {folder!r}: {path} is not a folder")
    return Group(folder=folder, path=path, is_main=folder == MAIN_FOLDER)


def _symlink_problem(groups_dir: Path, folder: str) -> str:
    fix = (
        f"a group folder must be a real folder inside groups/ (remove the symlink groups/{folder})"
    )
    try:
        real = (groups_dir / folder).resolve(strict=True)
    except (OSError, RuntimeError):
        return f"group {folder!r}: groups/{folder} is a broken or looping symlink; {fix}"
    if real.parent != groups_dir.resolve():
        return f"group {folder!r}: groups/{folder} resolves to {real}, outside groups/; {fix}"
    return f"group {folder!r}: groups/{folder} is a link to groups/{real.name}; {fix}"


def list_groups(project: Project) -> list[Group]:
    """Every valid group folder under ``groups/``, sorted by name.

    Entries that break the folder rules (``global``, bad names, files,
    symlinks leading outside ``groups/``) are not groups and are left out.
    """
    groups_dir = project.groups_dir
    if not groups_dir.is_dir():
        return []
    found = []
    for entry in sorted(groups_dir.iterdir(), key=lambda p: p.name):
        if _name_problem(entry.name):
            continue
        try:
            group = resolve_group(project, entry.name, must_exist=True)
        except UserError:
            continue
        found.append(group)
    return found


def group_path_text(folder: str, *parts: str) -> str:
    """A path under a group as shown in messages: ``groups/dev/config.json``."""
    return str(Path("groups", folder, *parts).as_posix())
