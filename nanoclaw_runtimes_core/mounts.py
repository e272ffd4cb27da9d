"""The mounts of the NanoClaw contract, planned without touching the disk.

Every sandbox sees::

    groups/{folder}                 -> /workspace/group    read-write
    groups/global                   -> /workspace/global   read-only (read-write for main)
    project root (main only)        -> /workspace/project  read-only, .env and secret-looking
                                                           files masked
    data/sessions/{folder}/.claude  -> /home/node/.claude  read-write
    data/ipc/{folder}               -> /workspace/ipc      read-write
    validated additionalMounts      -> /workspace/extra/{containerPath}

and ``/workspace/group/config.json`` is masked read-only (see
:mod:`nanoclaw_runtimes_core.config.trust`). Additional mounts are checked
against the allowlist and may never reach the project's control files
(``groups/``, ``data/``, ``.env``) or the allowlist itself. Folders are created
later, under the group's lock (:mod:`nanoclaw_runtimes_core.workspace`).
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .groups import GLOBAL_FOLDER
from .models import Group, Mask, Mount, Project, RejectedMount
from .record import Record
from .settings.core import AdditionalMount

if TYPE_CHECKING:
    # Loaded only for a group that has additional mounts or is the main group.
    from .allowlist import Allowlist

EXTRA_PREFIX = "/workspace/extra"
IPC_SUBFOLDERS = ("messages", "tasks", "input")
"""Created under ``data/ipc/{folder}``, as NanoClaw's host does, for the agent's IPC files."""
GROUP_CONFIG_IN_SANDBOX = "/workspace/group/config.json"
MAX_MASK_SCAN = 2000


class MountPlan(Record):
    """The mounts for one group's sandbox (parents first), the masks over them, and the
    additional mounts that were refused. ``notes`` tells of mounts made read-only against the
    group's wish."""

    mounts: tuple[Mount, ...]
    masks: tuple[Mask, ...] = ()
    rejected: tuple[RejectedMount, ...] = ()
    notes: tuple[str, ...] = ()


def describe_rejection(rejected: RejectedMount) -> str:
    """One line for the user: ``additional mount "~/x" refused: <reason>``."""
    return f"additional mount {json.dumps(rejected.host_path)} refused: {rejected.reason}"


def contract_paths(project: Project, folder: str) -> dict[str, Path]:
    """The host folders of the contract's mounts for ``folder``, by kind."""
    root = project.root
    return {
        "group": root / "groups" / folder,
        "global": root / "groups" / GLOBAL_FOLDER,
        "project": root,
        "sessions": root / "data" / "sessions" / folder / ".claude",
        "ipc": root / "data" / "ipc" / folder,
        "agent-src": root / "data" / "sessions" / folder / "agent-runner-src",
        "store": root / "store",
    }


def protected_paths(project: Project, allowlist: Path) -> tuple[Path, ...]:
    """Paths no additional mount may contain or lie inside: the project's control files."""
    root = project.root
    return (root / "groups", root / "data", root / ".env", allowlist, allowlist.parent)


def _real(path: Path) -> Path:
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):
        return path


def _overlaps(real: Path, protected: Iterable[Path]) -> Path | None:
    for p in protected:
        rp = _real(p)
        if real == rp or rp in real.parents or real in rp.parents:
            return p
    return None


def check_global(project: Project) -> None:
    """``groups/global`` must be a real folder inside ``groups/`` (or not exist yet)."""
    path = project.groups_dir / GLOBAL_FOLDER
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(
            [
                "groups/global is a symbolic link; the shared folder must be a real folder "
                "inside groups/ (replace the link with the folder)"
            ]
        )
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(["groups/global is not a folder; remove it or make it one"])


def _project_masks(root: Path, patterns: tuple[str, ...]) -> list[Mask]:
    """Masks over the main group's view of the project: ``.env`` and entries whose names match
    a blocked pattern, at the top level and one level down (``groups/`` and ``data/`` are the
    contract's own and not scanned)."""
    masks: list[Mask] = []
    seen = 0

    def scan(folder: Path, prefix: str, depth: int) -> None:
        nonlocal seen
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            seen += 1
            if seen > MAX_MASK_SCAN:
                return
            name = entry.name
            where = f"{prefix}/{name}"
            lowered = name.lower()
            if any(p.lower() in lowered for p in patterns):
                is_dir = entry.is_dir(follow_symlinks=False)
                masks.append(
                    Mask(
                        container_path=f"/workspace/project{where}",
                        source=None,
                        reason=f"matches a blocked pattern ({'folder' if is_dir else 'file'})",
                        folder=is_dir,
                    )
                )
            elif (
                depth == 0
                and name not in ("groups", "data")
                and entry.is_dir(follow_symlinks=False)
            ):
                scan(Path(entry.path), where, 1)

    scan(root, "", 0)
    return masks


def plan_mounts(
    project: Project,
    group: Group,
    additional: Iterable[AdditionalMount],
    allowlist_path: str | Path,
    *,
    config_mask: Path | None = None,
) -> MountPlan:
    """The contract's mounts for ``group``; nothing is created or written.

    ``config_mask`` is the host file holding the trusted config shown read-only at
    ``/workspace/group/config.json`` (None: no mask; the file does not exist).
    """
    check_global(project)
    paths = contract_paths(project, group.folder)
    mounts = [
        Mount(
            host_path=paths["group"],
            container_path="/workspace/group",
            readonly=False,
            kind="group",
        ),
        Mount(
            host_path=paths["global"],
            container_path="/workspace/global",
            readonly=not group.is_main,
            kind="global",
        ),
    ]
    masks: list[Mask] = []
    if config_mask is not None:
        masks.append(
            Mask(
                container_path=GROUP_CONFIG_IN_SANDBOX,
                source=config_mask,
                reason="the group's configuration is the host's, shown read-only",
            )
        )
    allowlist_file = Path(allowlist_path).expanduser()
    if not allowlist_file.is_absolute():
        allowlist_file = project.root / allowlist_file
    entries = tuple(additional)
    allowlist: Allowlist | None = None
    if entries or group.is_main:
        from .allowlist import load_allowlist

        allowlist = load_allowlist(allowlist_file, base=project.root)
    if group.is_main:
        mounts.append(
            Mount(
                host_path=project.root,
                container_path="/workspace/project",
                readonly=True,
                kind="project",
            )
        )
        patterns = allowlist.blocked_patterns if allowlist is not None else ()
        masks += _project_masks(project.root, patterns or _builtin())
    mounts.append(
        Mount(
            host_path=paths["sessions"],
            container_path="/home/node/.claude",
            readonly=False,
            kind="sessions",
        )
    )
    mounts.append(
        Mount(host_path=paths["ipc"], container_path="/workspace/ipc", readonly=False, kind="ipc")
    )

    rejected: list[RejectedMount] = []
    notes: list[str] = []
    used = {m.container_path for m in mounts}
    protected = protected_paths(project, allowlist_file)
    for entry in entries:
        assert allowlist is not None
        mount, message = check_additional_mount(
            entry, project=project, allowlist=allowlist, is_main=group.is_main, protected=protected
        )
        if mount is not None and mount.container_path in used:
            message = f"{mount.container_path} is already used by another mount"
            mount = None
        if mount is None:
            rejected.append(
                RejectedMount(
                    host_path=entry.host_path, container_path=entry.container_path, reason=message
                )
            )
            continue
        used.add(mount.container_path)
        mounts.append(mount)
        if message:
            notes.append(f"additional mount {json.dumps(entry.host_path)}: {message}")
    return MountPlan(
        mounts=ordered(mounts), masks=tuple(masks), rejected=tuple(rejected), notes=tuple(notes)
    )


def _builtin() -> tuple[str, ...]:
    from .allowlist import BUILTIN_BLOCKED_PATTERNS

    return BUILTIN_BLOCKED_PATTERNS


def ordered(mounts: Iterable[Mount]) -> tuple[Mount, ...]:
    """Mounts parents first (a mount inside another comes after it), otherwise as given."""
    return tuple(sorted(mounts, key=lambda m: len(posixpath.normpath(m.container_path).split("/"))))


def check_additional_mount(
    entry: AdditionalMount,
    *,
    project: Project,
    allowlist: Allowlist,
    is_main: bool,
    protected: tuple[Path, ...] = (),
) -> tuple[Mount | None, str]:
    """Check one ``additionalMounts`` entry against the contract's rules.

    Returns ``(mount, note)`` when accepted (``note`` says why it was made
    read-only, or is empty), or ``(None, reason)`` when refused. A relative
    ``hostPath`` is taken from the project root.
    """
    from .allowlist import allowed_root, blocked_by, display

    if allowlist.error:
        return None, allowlist.error
    host = entry.host_path
    if not host.strip():
        return None, "hostPath is empty"
    expanded = Path(host).expanduser()
    if not expanded.is_absolute():
        expanded = project.root / expanded
    container, problem = _container_path(entry, expanded)
    if problem:
        return None, problem
    try:
        real = expanded.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, f"host path {host} does not exist ({expanded})"
    if not real.is_dir():
        return None, f"{real} is not a folder; additional mounts are folders"
    pattern = blocked_by(real, allowlist.blocked_patterns)
    if pattern is not None:
        return None, (
            f'{real} matches the blocked pattern "{pattern}"; '
            "credentials and secrets are never mounted"
        )
    clash = _overlaps(real, protected)
    if clash is not None:
        return None, (
            f"{real} overlaps {clash}, which decides how runs are made (the project's groups/, "
            "data/ and .env, and the mount allowlist): mount a folder beside them instead"
        )
    root = allowed_root(real, allowlist.allowed_roots)
    if root is None:
        roots = ", ".join(r.path for r in allowlist.allowed_roots) or "none"
        return None, (
            f"{real} is not under an allowed root of {display(allowlist.path)} "
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
    mount = Mount(
        host_path=real,
        container_path=f"{EXTRA_PREFIX}/{container}",
        readonly=readonly,
        kind="extra",
    )
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
    if ".." in given.split("/"):
        return "", f"{what} must not contain '..'"
    if ":" in given or "," in given:
        return "", f"{what} must not contain ':' or ','"
    if any(ord(c) < 32 or c == "\x7f" for c in given):
        return "", f"{what} must not contain control characters"
    normal = posixpath.normpath(given)
    if normal in ("", "."):
        return "", f'{what} names no folder; give a relative path such as "data"'
    return normal, None


# --------------------------------------------------------------------------- mounts a host passes


def check_host_mount(
    host: str,
    container: str,
    readonly: bool,
    *,
    project: Project,
    group: Group,
    allowlist_path: Path,
) -> tuple[Mount | None, str]:
    """A mount a host such as NanoClaw asks for on its own command line (``-v host:ctr[:ro]``),
    re-checked against the contract: ``(mount, "")`` to add, ``(None, "")`` when the contract
    already provides it, or ``(None, reason)`` when refused. Never widens what a group may see."""
    paths = contract_paths(project, group.folder)
    expected = {
        "/workspace/group": ("group", False),
        "/workspace/global": ("global", not group.is_main),
        "/workspace/project": ("project", True),
        "/home/node/.claude": ("sessions", False),
        "/workspace/ipc": ("ipc", False),
    }
    container = posixpath.normpath(container)
    if container in expected:
        kind, _ = expected[container]
        if kind == "project" and not group.is_main:
            return None, "the project is shown to the main group only"
        if _real(Path(host)) != _real(paths[kind]):
            return None, f"{container} is {paths[kind]} for this group, not {host}"
        return None, ""
    if container == "/workspace/project/.env":
        return None, ""  # masked by the contract for the main group
    if container == "/app/src":
        if _real(Path(host)) != _real(paths["agent-src"]):
            return None, f"/app/src must come from {paths['agent-src']}"
        return Mount(
            host_path=paths["agent-src"],
            container_path=container,
            readonly=readonly,
            kind="agent-src",
        ), ""
    if container == "/workspace/project/store":
        if not group.is_main or _real(Path(host)) != _real(paths["store"]):
            return None, "only the main group gets the project's store/, read-write"
        return Mount(
            host_path=paths["store"], container_path=container, readonly=readonly, kind="store"
        ), ""
    if container.startswith(EXTRA_PREFIX + "/"):
        entry = AdditionalMount(
            host_path=host, container_path=container[len(EXTRA_PREFIX) + 1 :], readonly=readonly
        )
        from .allowlist import load_allowlist

        allowlist = load_allowlist(allowlist_path, base=project.root)
        return check_additional_mount(
            entry,
            project=project,
            allowlist=allowlist,
            is_main=group.is_main,
            protected=protected_paths(project, allowlist_path),
        )
    path = Path(host)
    if readonly and path.is_file() and not path.is_symlink():
        import tempfile

        from .allowlist import blocked_by

        real = _real(path)
        temp = _real(Path(tempfile.gettempdir()))
        if temp in real.parents and blocked_by(real, _builtin()) is None:
            return Mount(host_path=real, container_path=container, readonly=True, kind="file"), ""
        return None, f"a single file may only come read-only from {temp}"
    return None, f"{container} is not a mount of the NanoClaw contract"
