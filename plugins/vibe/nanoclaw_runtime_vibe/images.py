"""The disk lifecycle: one persistent raw disk per group, cloned from a base on first use.

Layout of the images folder (``VIBE_IMAGES_DIR``, relative to the project root)::

    base.raw                  a base (VIBE_BASE_IMAGE / containerConfig.vibeImage names it)
    base.raw.info.json        what built it and its default agent (write_base_info)
    custom.raw                another base a group may name
    dev.raw                   group "dev"'s own disk: its persistent state
    .dev.raw.lock             held by whatever boots dev.raw, for the VM's whole life
    .dev.raw.partial-…        a clone being written (locked by its writer) or left by a
                              killed one (unlocked: swept by the next run, reset or stats)
    .base.raw.build-…/        a base build's work folder (owner-locked the same way)

A group's disk is always ``{group}.raw`` and must be its own file: never a link,
never a file with other hard links, never the base's inode. A base is never a
file that is some group's disk. Each rule is checked where a disk or base is
used, with an error naming the setting and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import cow

if TYPE_CHECKING:
    from .settings import VibeSettings

RUNTIME = "vibe"
DISK_SUFFIX = ".raw"
INFO_SUFFIX = ".info.json"
LOCK_SUFFIX = ".lock"
MAX_INFO = 64 * 1024
BASE_SETTING = "containerConfig.vibeImage / VIBE_BASE_IMAGE"

ProgressFn = Callable[[str, float | None], None]


# --------------------------------------------------------------------------- paths


def images_dir(project: nc.Project, settings: VibeSettings) -> Path:
    """The images folder of a project (``VIBE_IMAGES_DIR`` resolved against its root)."""
    return project.resolve(settings.images_dir)


def _group_names(project: nc.Project) -> set[str]:
    """Every name under ``groups/`` that is or could be a group (folders and links alike)."""
    from nanoclaw_runtimes_core.groups import name_problem

    try:
        with os.scandir(project.groups_dir) as entries:
            return {e.name for e in entries if name_problem(e.name) is None}
    except OSError:
        return set()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _group_disk_identities(folder: Path, groups: set[str]) -> dict[tuple[int, int], str]:
    found: dict[tuple[int, int], str] = {}
    for name in groups:
        with contextlib.suppress(OSError):
            found[_identity(os.stat(folder / f"{name}{DISK_SUFFIX}"))] = name
    return found


def base_path(project: nc.Project, settings: VibeSettings) -> Path:
    """The base a group's disk is cloned from (or a base build writes).

    Refused when it names a group's disk (``<g>.raw`` for a folder ``groups/<g>``, the
    group's own included) or is the same file as one (a link or hard link to it).
    """
    folder = images_dir(project, settings)
    name = str(settings.base_image)
    groups = _group_names(project)
    for group in groups:
        if name.casefold() == f"{group}{DISK_SUFFIX}".casefold():
            raise nc.ConfigError(
                [
                    f"{BASE_SETTING} is {name!r}, which is the disk of group {group!r} "
                    f"(groups/{group} exists): a base must be a file no group uses as its disk. "
                    f"Name a base instead (e.g. base.raw; `nanoclaw-runtimes prepare --base vibe` "
                    f"builds one)"
                ]
            )
    base = folder / name
    try:
        st = os.stat(base)
    except OSError:
        return base
    owner = _group_disk_identities(folder, groups).get(_identity(st))
    if owner is not None:
        raise nc.ConfigError(
            [
                f"{BASE_SETTING}: {base} is the same file as the disk of group {owner!r} "
                f"({owner}{DISK_SUFFIX}, through a link or hard link): a base must be its own "
                f"file. Point {BASE_SETTING} at a real base image"
            ]
        )
    return base


def group_disk(project: nc.Project, settings: VibeSettings, folder: str) -> Path:
    """The group's own persistent disk, ``{images_dir}/{folder}.raw``."""
    _check_group_name(folder)
    return images_dir(project, settings) / f"{folder}{DISK_SUFFIX}"


def _check_group_name(folder: str) -> None:
    """Refuse a group folder name that is not a group's (the core checked it already)."""
    from nanoclaw_runtimes_core.groups import check_folder_name

    check_folder_name(folder)


def disk_lock_path(disk: Path) -> Path:
    """The lock file whatever boots ``disk`` holds for the VM's whole life."""
    return disk.with_name(f".{disk.name}{LOCK_SUFFIX}")


def disk_in_use(disk: Path) -> bool:
    """Whether a VM holds ``disk``: its lock file, or a ``flock`` on the image itself."""
    if nc.owner_alive(disk_lock_path(disk)):
        return True
    return nc.owner_alive(disk)


def missing_base_message(base: Path) -> str:
    """What to tell a user whose base image does not exist."""
    return (
        f"the vibe base image {base} does not exist. Build it with "
        f"`nanoclaw-runtimes prepare --base vibe`, or copy a raw Linux disk image there "
        f"(`cp my-image.raw {base}`), or point {BASE_SETTING} at an image that exists in "
        f"{base.parent}"
    )


def check_disk(disk: Path, base: Path) -> os.stat_result | None:
    """The status of the group's disk, or None when it does not exist yet.

    Raises :class:`nc.UserError` when it is a link, not a regular file, has other hard
    links, or is the base itself: a group's disk must be a file nothing else uses.
    """
    try:
        fd = os.open(disk, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise nc.UserError(
                f"{disk} is a symbolic link; a group's disk must be its own file. Remove the "
                f"link (`rm {disk}`): the next run clones a fresh disk from the base"
            ) from None
        raise
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    fix = f"remove it (`nanoclaw-runtimes reset {disk.stem}`) so the next run clones a fresh one"
    if not stat.S_ISREG(st.st_mode):
        raise nc.UserError(f"{disk} is not a regular file; {fix}")
    if st.st_nlink > 1:
        raise nc.UserError(
            f"{disk} has {st.st_nlink - 1} other hard link(s): another name shares its blocks "
            f"and writes. A group's disk must be its own file; {fix}"
        )
    with contextlib.suppress(OSError):
        if _identity(os.stat(base)) == _identity(st):
            raise nc.UserError(
                f"{disk} is the same file as the base {base.name}; a group's disk must be its "
                f"own file. {fix}"
            )
    return st


# --------------------------------------------------------------------------- lifecycle


def sweep(project: nc.Project, settings: VibeSettings) -> list[str]:
    """Remove what killed clones and builds left in the images folder (never one in progress);
    one line per thing removed."""
    lines = []
    for path in cow.sweep_partials(images_dir(project, settings)):
        what = "base build" if cow.BUILD_TAG in path.name else "partial clone"
        lines.append(f"removed a {what} left by a killed process: {path}")
    return lines


def _progress_bytes(progress: ProgressFn, total: int, what: str) -> Callable[[int], None]:
    state = {"done": 0, "shown": -1.0}

    def step(n: int) -> None:
        state["done"] += n
        fraction = min(1.0, state["done"] / total) if total else None
        if fraction is not None and fraction - state["shown"] >= 0.05:
            state["shown"] = fraction
            progress(f"{what}: {state['done'] / 2**20:.0f} of {total / 2**20:.0f} MB", fraction)

    return step


def ensure_group_disk(
    project: nc.Project,
    settings: VibeSettings,
    folder: str,
    *,
    progress: ProgressFn = lambda message, fraction: None,
) -> str | None:
    """Make sure the group's disk exists: clone it from its base on first use.

    Called before every execution (the group lock is held): cheap when the disk exists.
    Leftovers of killed clones are swept first. Returns a summary of what was done, or None.
    """
    lines = sweep(project, settings)
    base = base_path(project, settings)
    disk = group_disk(project, settings, folder)
    if check_disk(disk, base) is not None:
        return "\n".join(lines) or None
    try:
        base_st = os.stat(base)
    except FileNotFoundError:
        raise nc.UserError(missing_base_message(base)) from None
    disk.parent.mkdir(parents=True, exist_ok=True)
    groups = _group_names(project)

    def refuse_group_disks(st: os.stat_result) -> None:
        owner = _group_disk_identities(disk.parent, groups).get(_identity(st))
        if owner is not None:
            raise nc.UserError(
                f"{BASE_SETTING}: {base} is the disk of group {owner!r}; a base must be a file "
                "no group uses as its disk"
            )

    what = f"cloning {disk.name} from {base.name}"
    progress(what, 0.0)
    started = time.monotonic()
    result = cow.clone_image(
        base,
        disk,
        progress=_progress_bytes(progress, base_st.st_blocks * 512, what),
        check_source=refuse_group_disks,
    )
    check_disk(disk, base)
    took = time.monotonic() - started
    how = {
        "reflink": "a reflink: blocks shared with the base",
        "clonefile": "clonefile: blocks shared with the base",
        "sparse": f"a sparse copy of {result.bytes_copied / 2**20:.0f} MB of data",
        "sparse-scan": f"a sparse scan copy of {result.bytes_copied / 2**20:.0f} MB of data",
    }[result.method]
    progress(f"{disk.name} ready", 1.0)
    lines.append(f"cloned {disk} from {base.name} in {took:.1f} s ({how})")
    return "\n".join(lines)


def reset_group_disk(project: nc.Project, settings: VibeSettings, folder: str) -> list[str]:
    """Delete the group's disk (the caller holds the group lock and stopped its warm VM).

    Refused while anything still holds the disk (a VM that did not power off).
    """
    lines = sweep(project, settings)
    disk = group_disk(project, settings, folder)
    try:
        st = os.lstat(disk)
    except FileNotFoundError:
        return lines
    if disk_in_use(disk):
        raise nc.UserError(
            f"{disk} is still in use by a VM of group {folder!r}; wait for it to power off "
            f"(`nanoclaw-runtimes stats` lists warm VMs) and reset again"
        )
    if stat.S_ISLNK(st.st_mode):
        os.unlink(disk)
        lines.append(f"removed the symbolic link {disk} (what it pointed to was left alone)")
        return lines
    if stat.S_ISDIR(st.st_mode):
        raise nc.UserError(f"{disk} is a folder, not a disk image; remove it by hand")
    os.unlink(disk)
    lines.append(
        f"removed {disk} ({st.st_blocks * 512 / 2**20:.0f} MB allocated); the next run clones "
        "it again from its base"
    )
    return lines


@contextlib.contextmanager
def base_build_lock(project: nc.Project, target: Path) -> Iterator[None]:
    """Hold the lock of a base build of ``target`` (one build per base at a time; a second
    one is refused at once rather than waiting for minutes)."""
    from nanoclaw_runtimes_core.locks import LockTimeout, locks_dir

    digest = hashlib.sha256(str(target).encode()).hexdigest()[:12]
    lock = nc.FileLock(locks_dir(project) / f"vibe-base-{target.name}-{digest}.lock")
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        raise nc.UserError(
            f"another `prepare --base vibe` is building {target} right now; wait for it to "
            "finish (a build takes minutes)"
        ) from None
    try:
        yield
    finally:
        lock.release()


# --------------------------------------------------------------------------- base metadata


def info_path(base: Path) -> Path:
    """The metadata file of a base (``{base}.info.json``)."""
    return base.with_name(base.name + INFO_SUFFIX)


def write_base_info(target: Path, *, agent: Sequence[str], kind: str, **info: Any) -> Path:
    """Record what a base is and its default agent, beside it (atomically).

    Call it once the base is in place: the metadata names the base's inode, so a file later
    copied over the base (another inode) is not described by stale metadata.
    """
    words = [str(w) for w in agent]
    if not words or not all(words):
        raise ValueError("a base's agent command needs at least one non-empty word")
    data: dict[str, Any] = {
        "kind": kind,
        "agent": words,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **info,
    }
    with contextlib.suppress(OSError):
        st = os.stat(target)
        data["image"] = {"inode": st.st_ino, "size": st.st_size, "mtimeNs": st.st_mtime_ns}
    path = info_path(target)
    with nc.SafeDir.open(path.parent) as folder:
        folder.replace_file(path.name, json.dumps(data, indent=2).encode() + b"\n", mode=0o644)
    return path


def read_base_info(base: Path) -> dict[str, Any] | None:
    """The base's metadata, or None when it has none (or it describes another file)."""
    path = info_path(base)
    try:
        with nc.SafeDir.open(path.parent) as folder:
            raw = folder.read(path.name, MAX_INFO)
    except FileNotFoundError:
        return None
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise nc.UserError(
            f"{path}: not valid JSON ({exc}); rebuild the base (`nanoclaw-runtimes prepare "
            f"--base vibe --force`) or remove the file"
        ) from None
    agent = data.get("agent") if isinstance(data, dict) else None
    if not isinstance(agent, list) or not agent or not all(isinstance(w, str) and w for w in agent):
        raise nc.UserError(
            f'{path}: "agent" must be a list of non-empty strings (the base\'s default agent '
            "command); fix it, or remove the file to use the example agent"
        )
    image = data.get("image")
    if isinstance(image, dict) and "inode" in image:
        try:
            st = os.stat(base)
        except OSError:
            return None
        if (st.st_ino, st.st_mtime_ns) != (image["inode"], image.get("mtimeNs", st.st_mtime_ns)):
            return None  # written for a file that has since been replaced
    found: dict[str, Any] = data
    return found


def example_agent_command() -> list[str]:
    """The default agent of a base without metadata: the core's example agent (standard
    library only), which every engine shows read-only at ``nc.EXAMPLE_AGENT`` in the guest."""
    return ["python3", nc.EXAMPLE_AGENT]


def default_agent(base: Path) -> list[str]:
    """The agent command of a group without ``agentCommand``: the base's, from its metadata.

    A base without metadata (a raw image copied in by hand) runs the core's example agent,
    ``python3 /opt/nanoclaw/example_agent.py``, which the engines show in every guest; an
    image without python3 then fails with exit status 127 and the group needs
    ``containerConfig.agentCommand``.
    """
    info = read_base_info(base)
    if info is None:
        return example_agent_command()
    return list(info["agent"])


# --------------------------------------------------------------------------- boot key


def boot_parts(
    request: nc.ExecuteRequest[VibeSettings], settings: VibeSettings, engine_name: str
) -> dict[str, Any]:
    """Everything that shapes a group's VM (not a run): what :func:`boot_key` digests."""
    from nanoclaw_runtimes_core.record import asdict

    project = request.project
    disk = group_disk(project, settings, request.group.folder)
    identity: list[int] | None = None
    with contextlib.suppress(OSError):
        identity = list(_identity(os.stat(disk)))
    engine_settings = {k: v for k, v in asdict(settings).items() if k != "keep_warm"}
    return {
        "engine": engine_name,
        "disk": str(disk),
        "diskIdentity": identity,
        "base": str(base_path(project, settings)),
        "mounts": [
            [str(m.host_path), m.container_path, m.readonly, m.kind] for m in request.mounts
        ],
        "masks": [[m.container_path, m.folder, m.source is not None] for m in request.masks],
        "cpus": settings.cpus,
        "ramMB": settings.ram,
        "network": settings.network,
        "user": [request.user.uid, request.user.gid],
        "settings": {
            k: v if isinstance(v, (str, int, float, bool)) else str(v)
            for k, v in engine_settings.items()
        },
    }


def boot_key(
    request: nc.ExecuteRequest[VibeSettings], settings: VibeSettings, engine_name: str
) -> str:
    """A digest of what shapes the VM: disk, base, mounts and their modes, masks, cpus, ram,
    network, the sandbox user and the engine's settings. A warm VM whose key differs is
    powered off and a fresh one booted."""
    parts = boot_parts(request, settings, engine_name)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two :func:`boot_parts` (for "booting a fresh VM because ...")."""
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "settings":
            a, b = old.get(key) or {}, new.get(key) or {}
            changed += [
                f"{k} {a.get(k)!r} -> {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif key in ("mounts", "masks"):
            changed.append(f"its {key} changed")
        elif key == "diskIdentity":
            changed.append("its disk was replaced")
        else:
            changed.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    return ", ".join(changed) or "its configuration changed"


# --------------------------------------------------------------------------- stats


def _row(path: Path, st: os.stat_result, **kwargs: Any) -> nc.StatsRow:
    return nc.StatsRow(
        runtime=RUNTIME,
        path=str(path),
        apparent_mb=st.st_size / 2**20,
        allocated_mb=st.st_blocks * 512 / 2**20,
        modified=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
        **kwargs,
    )


def _leftover_row(path: Path, st: os.stat_result, state: str) -> nc.StatsRow:
    name = path.name
    stem = name[1:].split(cow.PARTIAL_TAG, 1)[0].split(cow.BUILD_TAG, 1)[0]
    building = cow.BUILD_TAG in name
    group = stem[: -len(DISK_SUFFIX)] if (not building and stem.endswith(DISK_SUFFIX)) else None
    what = f"a build of the base {stem}" if building else f"a clone of {stem}"
    if state == "live":
        note = f"{what} in progress (its process is running)"
    else:
        note = f"{what} left by a killed process; it could not be removed"
    if stat.S_ISDIR(st.st_mode):
        usage = nc.disk_usage(path)
        return nc.StatsRow(
            runtime=RUNTIME,
            group=group,
            kind="build" if building else "partial",
            path=str(path),
            apparent_mb=usage.apparent / 2**20,
            allocated_mb=usage.allocated / 2**20,
            modified=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
            note=note,
            details={"state": state},
        )
    return _row(
        path,
        st,
        group=group,
        kind="build" if building else "partial",
        note=note,
        details={"state": state},
    )


def image_stats(
    project: nc.Project, settings: VibeSettings, groups: Sequence[nc.Group] = ()
) -> list[nc.StatsRow]:
    """One row per thing in the images folder, after sweeping what killed processes left:
    group disks (``disk``), bases (``base``), clones and builds in progress or that could not
    be removed (``partial``, ``build``). ``groups`` are the groups on this runtime."""
    folder = images_dir(project, settings)
    sweep(project, settings)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return []
    names = {e.name for e in entries}
    on_vibe = {g.folder for g in groups}
    all_groups = _group_names(project)
    configured = str(settings.base_image)
    rows: list[nc.StatsRow] = []
    for entry in entries:
        name, path = entry.name, Path(entry.path)
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if name.startswith("."):
            state = cow.leftover_state(path)
            if state != "not-ours":
                rows.append(_leftover_row(path, st, state))
            continue
        if name.endswith(INFO_SUFFIX) and name[: -len(INFO_SUFFIX)] in names:
            continue
        stem = name[: -len(DISK_SUFFIX)] if name.endswith(DISK_SUFFIX) else None
        if stat.S_ISLNK(st.st_mode):
            note = f"a symbolic link to {os.readlink(path)}"
            if stem in all_groups:
                note += "; refused as a group's disk: remove it"
            rows.append(
                _row(path, st, group=stem if stem in all_groups else None, kind="link", note=note)
            )
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if stem is not None and stem in all_groups and name != configured:
            notes = []
            if stem not in on_vibe:
                notes.append(
                    f"group {stem!r} does not run on vibe now; delete this file to free "
                    "its space (no run uses it)"
                )
            if st.st_nlink > 1:
                notes.append("has other hard links: refused at the next run")
            details: dict[str, Any] = {"inUse": disk_in_use(path)}
            rows.append(
                _row(path, st, group=stem, kind="disk", note="; ".join(notes), details=details)
            )
            continue
        note = "the configured base" if name == configured else "another base (a group's vibeImage)"
        details = {}
        try:
            info = read_base_info(path)
        except nc.UserError as exc:
            info, note = None, f"{note}; {exc}"
        if info is not None:
            details = {"baseKind": info.get("kind"), "agent": info.get("agent")}
            note += f"; built as {info.get('kind')}"
        if (
            stem is not None
            and name != configured
            and _could_be_group(stem)
            and stem not in all_groups
        ):
            note += f", or the disk of a removed group (no groups/{stem})"
        rows.append(_row(path, st, group=None, kind="base", note=note, details=details))
    return rows


def _could_be_group(stem: str) -> bool:
    """Whether ``stem`` could be a group folder name."""
    from nanoclaw_runtimes_core.groups import name_problem

    return name_problem(stem) is None
