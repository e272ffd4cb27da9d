"""The mounts of the NanoClaw contract, and the allowlist that guards additional mounts.

Every sandbox sees::

    groups/{folder}                 -> /workspace/group    read-write
    groups/global                   -> /workspace/global   read-only (read-write for main)
    project root (main only)        -> /workspace/project  read-only
    data/sessions/{folder}/.claude  -> /home/node/.claude  read-write
    data/ipc/{folder}               -> /workspace/ipc      read-write
    validated additionalMounts      -> /workspace/extra/{containerPath}

A group's ``additionalMounts`` are checked against the mount allowlist
(default ``~/.config/nanoclaw/mount-allowlist.json``). A missing or invalid
allowlist blocks every additional mount. A refused mount is never dropped
silently: it comes back in :attr:`MountPlan.rejected` with its reason.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

import attrs

from .config import FileCache
from .groups import GLOBAL_FOLDER, resolve_group
from .models import Group, Mount, Project, RejectedMount
from .settings import (
    DEFAULT_ALLOWLIST,
    AdditionalMount,
    get_converter,
    structure_problems,
)

__all__ = [
    "BUILTIN_BLOCKED_PATTERNS",
    "AllowedRoot",
    "Allowlist",
    "MountPlan",
    "check_additional_mount",
    "contract_mounts",
    "describe_rejection",
    "load_allowlist",
]

BUILTIN_BLOCKED_PATTERNS: tuple[str, ...] = (
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
)
"""Never mountable, whatever the allowlist says (substring of any component of the real path)."""

EXTRA_PREFIX = "/workspace/extra"
IPC_SUBFOLDERS = ("messages", "tasks", "input")
"""Created under ``data/ipc/{folder}``, as NanoClaw's host does, for the agent's IPC files."""


# --------------------------------------------------------------------------- allowlist


@attrs.define(frozen=True, kw_only=True)
class AllowedRoot:
    """A folder under which additional mounts may come (``allowedRoots`` entry)."""

    path: str
    allow_read_write: bool = False
    description: str = ""


@attrs.define(frozen=True, kw_only=True)
class _AllowlistFile:
    """The allowlist file as written: camelCase keys, strictly typed, unknown keys refused."""

    allowed_roots: tuple[AllowedRoot, ...]
    blocked_patterns: tuple[str, ...] = ()
    non_main_read_only: bool = True


@attrs.define(frozen=True, kw_only=True)
class Allowlist:
    """A loaded mount allowlist. When ``error`` is set, every additional mount is blocked."""

    path: Path
    allowed_roots: tuple[AllowedRoot, ...] = ()
    blocked_patterns: tuple[str, ...] = BUILTIN_BLOCKED_PATTERNS
    """The built-in patterns followed by the user's."""
    non_main_read_only: bool = True
    error: str | None = None


_allowlist_cache = FileCache()


def load_allowlist(path: str | Path = DEFAULT_ALLOWLIST) -> Allowlist:
    """Read the mount allowlist at ``path`` (``~`` expanded); re-read when the file changes.

    Never raises for a bad file: a missing, unreadable or invalid allowlist
    comes back with ``error`` saying why, and then blocks every additional
    mount.
    """
    real = Path(path).expanduser()
    if not real.is_absolute():
        real = Path.cwd() / real
    return _allowlist_cache.get(real, _read_allowlist)


def _read_allowlist(path: Path) -> Allowlist:
    shown = _display(path)
    blocked = f"so additional mounts are blocked; fix {shown} (see docs/configuration.md)"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Allowlist(
            path=path,
            error=f"there is no mount allowlist at {shown}, so additional mounts are blocked; "
            "create it (see docs/configuration.md) or set NANOCLAW_MOUNT_ALLOWLIST",
        )
    except (OSError, UnicodeDecodeError) as exc:
        return Allowlist(path=path, error=f"the mount allowlist cannot be read ({exc}), {blocked}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return Allowlist(
            path=path, error=f"the mount allowlist is invalid ({where}: {exc.msg}), {blocked}"
        )
    if not isinstance(data, dict):
        return Allowlist(path=path, error=f"the mount allowlist must be a JSON object, {blocked}")
    data = {k: v for k, v in data.items() if not k.startswith("$")}
    try:
        parsed = get_converter().structure(data, _AllowlistFile)
    except Exception as exc:
        lines = structure_problems(exc, source="", path="$")
        details = "; ".join(f"{p.location.removeprefix('$.')}: {p.message}" for p in lines)
        return Allowlist(path=path, error=f"the mount allowlist is invalid ({details}), {blocked}")
    problems = _semantic_problems(parsed)
    if problems:
        details = "; ".join(problems)
        return Allowlist(path=path, error=f"the mount allowlist is invalid ({details}), {blocked}")
    return Allowlist(
        path=path,
        allowed_roots=parsed.allowed_roots,
        blocked_patterns=BUILTIN_BLOCKED_PATTERNS + parsed.blocked_patterns,
        non_main_read_only=parsed.non_main_read_only,
    )


def _semantic_problems(parsed: _AllowlistFile) -> list[str]:
    problems = []
    for i, root in enumerate(parsed.allowed_roots):
        if not root.path.startswith("~") and not os.path.isabs(root.path):
            problems.append(
                f"allowedRoots[{i}].path: {root.path!r} must be absolute or start with ~"
            )
    for i, pattern in enumerate(parsed.blocked_patterns):
        if not pattern.strip():
            problems.append(f"blockedPatterns[{i}]: must not be empty (it would match everything)")
    return problems


def _display(path: Path) -> str:
    """``path`` with the home folder written as ``~``."""
    home = Path.home()
    try:
        return "~/" + path.relative_to(home).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- checking one mount


@attrs.define(frozen=True, kw_only=True)
class MountPlan:
    """The mounts for one group's sandbox, and the additional mounts that were refused.

    ``notes`` tells of accepted mounts made read-only against the group's wish.
    """

    mounts: tuple[Mount, ...]
    rejected: tuple[RejectedMount, ...] = ()
    notes: tuple[str, ...] = ()


def describe_rejection(rejected: RejectedMount) -> str:
    """One line for the user: ``additional mount "~/x" refused: <reason>``."""
    return f"additional mount {json.dumps(rejected.host_path)} refused: {rejected.reason}"


def check_additional_mount(
    entry: AdditionalMount, *, project: Project, allowlist: Allowlist, is_main: bool
) -> tuple[Mount | None, str]:
    """Check one ``additionalMounts`` entry against the contract's rules.

    Returns ``(mount, note)`` when accepted (``note`` says why it was made
    read-only, or is empty), or ``(None, reason)`` when refused. A relative
    ``hostPath`` is taken from the project root.
    """
    if allowlist.error:
        return None, allowlist.error
    host = entry.host_path
    expanded = Path(host).expanduser() if host.strip() else None
    if expanded is None:
        return None, "hostPath is empty"
    if not expanded.is_absolute():
        expanded = project.root / expanded

    container, problem = _container_path(entry, expanded)
    if problem:
        return None, problem

    try:
        real = expanded.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, f"host path {host} does not exist ({expanded})"

    pattern = _blocked_by(real, allowlist.blocked_patterns)
    if pattern is not None:
        return None, (
            f'{real} matches the blocked pattern "{pattern}"; credentials and secrets '
            "are never mounted"
        )

    root = _allowed_root(real, allowlist.allowed_roots)
    if root is None:
        roots = ", ".join(r.path for r in allowlist.allowed_roots) or "none"
        return None, (
            f"{real} is not under an allowed root of {_display(allowlist.path)} "
            f"(allowed: {roots}); add a root there to allow it"
        )

    readonly, note = True, ""
    if entry.readonly is False:
        if not is_main and allowlist.non_main_read_only:
            note = "mounted read-only: nonMainReadOnly is set and this is not the main group"
        elif not root.allow_read_write:
            note = f"mounted read-only: allowed root {root.path} does not set allowReadWrite"
        else:
            readonly = False
    mount = Mount(host_path=real, container_path=f"{EXTRA_PREFIX}/{container}", readonly=readonly)
    return mount, note


def _container_path(entry: AdditionalMount, host: Path) -> tuple[str, str | None]:
    """The path under /workspace/extra, or a reason it is refused."""
    given = entry.container_path
    if given is None:
        name = host.name
        if not name:
            return "", f"host path {entry.host_path} has no name to mount it as; set containerPath"
        given = name
        what = f"the name {name!r} taken from hostPath"
    else:
        what = f"containerPath {json.dumps(given)}"
    if not given.strip():
        return "", f'{what} is empty; give a relative path such as "data"'
    if given.startswith("/"):
        return "", f"{what} must be relative: it is mounted under {EXTRA_PREFIX}/"
    if ".." in given:
        return "", f"{what} must not contain '..'"
    if ":" in given:
        return "", f"{what} must not contain ':'"
    if any(ord(c) < 32 or c == "\x7f" for c in given):
        return "", f"{what} must not contain control characters"
    normal = posixpath.normpath(given)
    if normal in ("", "."):
        return "", f'{what} names no folder; give a relative path such as "data"'
    return normal, None


def _blocked_by(real: Path, patterns: Iterable[str]) -> str | None:
    # Case-insensitive: on macOS ".SSH" is the same folder as ".ssh".
    text = real.as_posix().lower()
    parts = [part.lower() for part in real.parts]
    for pattern in patterns:
        needle = pattern.lower()
        if any(needle in part for part in parts) or needle in text:
            return pattern
    return None


def _allowed_root(real: Path, roots: Iterable[AllowedRoot]) -> AllowedRoot | None:
    for root in roots:
        try:
            root_real = Path(root.path).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # a root that does not exist allows nothing
        if real == root_real or root_real in real.parents:
            return root
    return None


# --------------------------------------------------------------------------- the whole table


def contract_mounts(
    project: Project,
    group: Group,
    additional: Iterable[AdditionalMount] = (),
    allowlist_path: str | Path = DEFAULT_ALLOWLIST,
    *,
    allowlist: Allowlist | None = None,
) -> MountPlan:
    """The contract's mounts for ``group``, creating the host folders they need.

    ``additional`` (the group's ``additionalMounts``) is checked against
    ``allowlist`` or, when not given, the file at ``allowlist_path``. Accepted
    ones go to ``/workspace/extra/{containerPath}``; refused ones are returned
    in :attr:`MountPlan.rejected` with their reason for the caller to report.
    """
    checked = resolve_group(project, group.folder)  # the folder rules, again, before mkdir
    root = project.root.resolve()
    group_dir = root.joinpath("groups", checked.folder)
    global_dir = root.joinpath("groups", GLOBAL_FOLDER)
    sessions = root.joinpath("data", "sessions", checked.folder, ".claude")
    ipc = root.joinpath("data", "ipc", checked.folder)
    needed = [group_dir, global_dir, sessions, *(ipc.joinpath(s) for s in IPC_SUBFOLDERS)]
    for folder in needed:
        if not os.path.isdir(folder):  # a stat is cheaper than mkdir's FileExistsError
            folder.mkdir(parents=True, exist_ok=True)

    mounts = [
        Mount(host_path=group_dir, container_path="/workspace/group", readonly=False),
        Mount(host_path=global_dir, container_path="/workspace/global", readonly=not group.is_main),
    ]
    if group.is_main:
        mounts.append(Mount(host_path=root, container_path="/workspace/project", readonly=True))
    mounts.append(Mount(host_path=sessions, container_path="/home/node/.claude", readonly=False))
    mounts.append(Mount(host_path=ipc, container_path="/workspace/ipc", readonly=False))

    entries = tuple(additional)
    if entries and allowlist is None:
        allowlist = load_allowlist(allowlist_path)
    rejected: list[RejectedMount] = []
    notes: list[str] = []
    used: dict[str, str] = {}
    for entry in entries:
        assert allowlist is not None
        mount, message = check_additional_mount(
            entry, project=project, allowlist=allowlist, is_main=group.is_main
        )
        if mount is not None and mount.container_path in used:
            message = f"{mount.container_path} is already used by {used[mount.container_path]}"
            mount = None
        if mount is None:
            rejected.append(
                RejectedMount(
                    host_path=entry.host_path, container_path=entry.container_path, reason=message
                )
            )
            continue
        used[mount.container_path] = entry.host_path
        mounts.append(mount)
        if message:
            notes.append(f"additional mount {json.dumps(entry.host_path)}: {message}")
    return MountPlan(mounts=tuple(mounts), rejected=tuple(rejected), notes=tuple(notes))
