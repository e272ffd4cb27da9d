"""A group's VM on this host: its state folder, its liveness, and how it is stopped.

``nc.runs_dir()/vms/<project tag>-<group>/`` (no ``run.json``: the core's sweep leaves it
alone) holds, while the VM lives::

    .owner      locked by an fd the watcher and QEMU inherit: liveness IS this lock
    vm.json     pid of the watcher, boot key, group, start time, share daemons' pids
    idle.json   when the VM powers itself off if no run comes (written after each run)
    ctl.sock in.sock out.sock err.sock con.sock   QEMU's channels (and its console)
    fs/N.sock   the shares' daemons
    qemu.pid, qemu.log

The *watcher* is a detached ``sh`` (own session, no parent-death signal) whose child is
QEMU. When QEMU exits it kills the share daemons and, after the guest's clean power-off
(its idle end), removes the whole folder; after anything else it leaves only ``ended``
(QEMU's exit status), so the next run can say why the warm VM was gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc

VMS = "vms"
OWNER = ".owner"
META = "vm.json"
IDLE = "idle.json"
ENDED = "ended"
CLEAN_EXIT = 33
"""QEMU's exit status when the guest powered off at its idle end (isa-debug-exit 0x10)."""

WATCHER = r"""
folder=$1; n=$2; shift 2; pids=""
while [ "$n" -gt 0 ]; do pids="$pids $1"; shift; n=$((n - 1)); done
"$@"
rc=$?
for p in $pids; do
	grep -qs virtiofsd "/proc/$p/cmdline" && kill -KILL "-$p" 2>/dev/null
done
if [ "$rc" -eq 33 ]; then
	cd / && rm -rf -- "$folder"
else
	echo "$rc" > "$folder/ended"
	rm -f "$folder"/*.sock "$folder"/fs/*.sock "$folder/qemu.pid"
fi
"""
"""The watcher: ``sh -c WATCHER watch FOLDER N PID... QEMU-ARGV...``."""


def project_tag(project: nc.Project) -> str:
    """A short tag of the project root, so that two projects' groups of one name differ."""
    return hashlib.sha256(str(project.root).encode()).hexdigest()[:10]


def vms_dir() -> Path:
    """This user's folder of VM state folders (0700, on the runs folder's memory fs)."""
    path = nc.runs_dir() / VMS
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    return path


def folder_of(project: nc.Project, group: str) -> Path:
    """The state folder of ``group``'s VM."""
    return vms_dir() / f"{project_tag(project)}-{group}"


def alive(folder: Path) -> bool:
    """Whether the VM of this folder (its watcher or QEMU) is alive."""
    return nc.owner_alive(folder / OWNER)


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file of ours, or {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a small JSON file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def take_owner_lock(folder: Path) -> int:
    """Lock a new folder's owner file; the fd is inheritable (the watcher keeps it)."""
    fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if not nc.lock_fd(fd, wait_s=0):
        os.close(fd)
        raise RuntimeError(f"{folder} is already owned by a live process")
    os.set_inheritable(fd, True)
    return fd


def take_disk_lock(lock_path: Path, disk: Path) -> int:
    """Lock the disk for the VM's life (the fd is inherited by the watcher and QEMU)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if not nc.lock_fd(fd, wait_s=0):
        os.close(fd)
        raise nc.UserError(
            f"the disk {disk} is in use by another VM (one disk is never booted twice: its "
            f"file system would be corrupted). A VM of this group started by another user or "
            f"tool still runs; stop it, or wait for it to power off"
        )
    os.set_inheritable(fd, True)
    return fd


def _is_ours(pid: int, folder: Path) -> bool:
    """Whether ``pid`` holds this folder's owner lock (so it is this VM's watcher or QEMU)."""
    want = str(folder / OWNER)
    with contextlib.suppress(OSError), os.scandir(f"/proc/{pid}/fd") as fds:
        for entry in fds:
            with contextlib.suppress(OSError):
                if os.readlink(entry.path) == want:
                    return True
    return False


def wait_gone(folder: Path, timeout: float) -> bool:
    """Wait until the VM of ``folder`` has ended; whether it did. Ended means its watcher has
    exited too: at a clean power-off the watcher removes the folder, its owner file first,
    while it still holds the disk's lock."""
    watcher = int(read_json(folder / META).get("pid") or 0)
    deadline = time.monotonic() + timeout
    while alive(folder) or nc.pid_running(watcher):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill(folder: Path) -> None:
    """Kill the VM at once (QEMU, its watcher, its share daemons) and remove its folder."""
    meta = read_json(folder / META)
    pid = int(meta.get("pid") or 0)
    if pid > 1 and _is_ours(pid, folder):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    qemu_pid = 0
    with contextlib.suppress(OSError, ValueError):
        qemu_pid = int((folder / "qemu.pid").read_text().strip())
    if qemu_pid > 1 and _is_ours(qemu_pid, folder):
        with contextlib.suppress(OSError):
            os.kill(qemu_pid, signal.SIGKILL)
    from . import virtiofs

    virtiofs.stop([int(p) for p in meta.get("daemons", [])])
    remove(folder, wait_s=10.0)


def remove(folder: Path, *, wait_s: float = 5.0) -> None:
    """Remove a dead VM's folder, once it has ended (within ``wait_s``); its watcher may be
    removing it at the same time."""
    if wait_gone(folder, wait_s):
        with contextlib.suppress(FileNotFoundError):
            nc.remove_tree(folder)


def describe_end(folder: Path) -> str:
    """Why a VM whose folder is left ended, for the user."""
    try:
        code = int((folder / ENDED).read_text().strip())
    except (OSError, ValueError):
        return "it was killed (its QEMU and watcher are gone)"
    if code > 128:
        return f"QEMU was killed by signal {code - 128}"
    if code == 0:
        return "the guest stopped on its own (a kernel panic or a power-off from inside)"
    return f"QEMU exited with status {code}"


def qemu_pid(folder: Path) -> int | None:
    """QEMU's pid (its ``-pidfile``), when it is alive and this VM's."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((folder / "qemu.pid").read_text().strip())
        if pid > 1 and _is_ours(pid, folder):
            return pid
    return None


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process in MB (0 when unknown)."""
    return (nc.resident_mb(pid) or 0.0) if pid is not None else 0.0
