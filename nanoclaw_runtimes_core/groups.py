"""Group folders: the naming rules of the NanoClaw contract and where each group lives.

A group lives in ``groups/{folder}``. ``folder`` must match
``^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`` and must not be ``global`` (the shared
folder); the folder must be a real folder, not a link. Whether a group is the
main group is decided by the host (``isMain`` in its ContainerInput, or
``NANOCLAW_MAIN_GROUPS``), not by the name alone.
"""

from __future__ import annotations

import os
import stat

from .errors import UserError
from .models import Group, Project

FOLDER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
"""The rule as a regular expression; checked with sets of characters (compiling a pattern
costs a run more than every other check of its name together)."""
_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_REST = _FIRST | {"_", "-"}
FOLDER_RULE = (
    "a group name is 1 to 64 letters, digits, '_' or '-', starting with a letter or digit "
    "(^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$), and is not 'global'"
)
GLOBAL_FOLDER = "global"


def name_problem(folder: str) -> str | None:
    """What is wrong with ``folder`` as a group name, or None."""
    if not isinstance(folder, str) or folder == "":
        return "it is empty"
    if folder.lower() == GLOBAL_FOLDER:
        return "'global' is the folder shared by every group, not a group"
    if len(folder) > 64:
        return f"it is {len(folder)} characters long, the limit is 64"
    if folder[0] not in _FIRST:
        return f"it starts with {folder[0]!r}"
    bad = next((c for c in folder if c not in _REST), None)
    if bad is not None:
        return f"it contains {bad!r}"
    return None


def check_folder_name(folder: str) -> None:
    """Raise :class:`UserError` saying what is wrong with ``folder`` as a group name."""
    problem = name_problem(folder)
    if problem:
        raise UserError(f"invalid group name {folder!r}: {problem}; {FOLDER_RULE}")


def folder_problem(project: Project, folder: str) -> str | None:
    """Why ``groups/{folder}`` cannot be used as a group folder (None when it can)."""
    path = project.groups_dir / folder
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return (
            f"group {folder!r} has no folder groups/{folder}; create it "
            f"(mkdir -p groups/{folder}) or check the name"
        )
    except OSError as exc:
        return f"group {folder!r}: groups/{folder} cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return (
            f"group {folder!r}: groups/{folder} is a symbolic link; a group folder must be a "
            f"real folder inside groups/ (replace the link with the folder itself)"
        )
    if not stat.S_ISDIR(st.st_mode):
        return f"group {folder!r}: groups/{folder} is not a folder"
    return None


def resolve_group(project: Project, folder: str, *, is_main: bool) -> Group:
    """The group ``folder``, after checking its name and its folder; raises UserError."""
    check_folder_name(folder)
    problem = folder_problem(project, folder)
    if problem:
        raise UserError(problem)
    return Group(folder=folder, path=project.groups_dir / folder, is_main=is_main)


def scan_groups(project: Project) -> tuple[list[str], list[tuple[str, str]]]:
    """Every group folder under ``groups/`` (sorted), and the entries that are not groups with
    the reason (bad names, links, files); ``global`` is neither."""
    try:
        entries = sorted(os.scandir(project.groups_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [("groups/", f"cannot be read ({exc.strerror})")]
    groups: list[str] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        if entry.name == GLOBAL_FOLDER:
            continue
        problem = name_problem(entry.name)
        if problem:
            if entry.is_dir(follow_symlinks=False):
                skipped.append((entry.name, f"not a group: invalid name ({problem})"))
            continue
        problem = folder_problem(project, entry.name)
        if problem:
            if entry.is_symlink() or entry.is_dir():
                skipped.append((entry.name, problem))
            continue
        groups.append(entry.name)
    return groups, skipped
