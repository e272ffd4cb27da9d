"""The shares: one virtiofsd per shared folder, inside a user namespace.

Debian 12 has only QEMU's C virtiofsd (``/usr/lib/qemu/virtiofsd``). It serves the guest's
requests with the credentials the guest asks for, so as host root it would let guest root
make setuid-root files and device nodes on the host. It therefore runs as the sandbox user
``S`` (``setpriv``) inside a user namespace (``unshare --user --mount``) whose ids
``0..65535`` are mapped onto ``S..S+65535`` (root's map, written by this process); not
as root, ``0`` maps onto the invoking user. Files guest root creates then belong to ``S``;
a device node cannot be made; a setuid file is setuid ``S``.

The daemon never resolves a host path itself: this process binds the shared folder at
``/run/nanoclaw-share`` inside the daemon's mount namespace (entering it with ``setns``,
so paths the sandbox user could not traverse still work), read-only for a read-only
share, so even a guest that remounts the share read-write gets ``EROFS``. The listening
socket is made here and handed over (``--fd``): it listens before the daemon starts, so
QEMU never races it. Each daemon exits when QEMU closes its connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import nanoclaw_runtimes_core as nc

C_VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
SHARE_POINT = "/run/nanoclaw-share"
ID_RANGE = 65536
NS_WAIT_S = 5.0
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384

_SCRIPT = 'read -r go || exit 1; exec "$@"'
"""Run in the daemon's new namespaces (as root): wait until this process has mapped its ids
and bound the folder, then become the daemon."""
_SCRIPT_USER = (
    "mount -t tmpfs -o mode=0755 nanoclaw /run && mkdir /run/nanoclaw-share && "
    'mount --rbind -- "$1" /run/nanoclaw-share && '
    '{ [ "$2" = rw ] || mount -o remount,bind,ro /run/nanoclaw-share; } && shift 2 && exec "$@"'
)
"""Not root: the user's own namespaces, where it can bind its own folders itself."""


class Share(nc.Record):
    """A folder shown to the guest at ``guest`` through virtiofs tag ``tag``."""

    tag: str
    source: Path
    guest: str
    readonly: bool


def find_virtiofsd(configured: str = "") -> str | None:
    """The virtiofsd to use: ``VIBE_QEMU_VIRTIOFSD`` or QEMU's own, if executable."""
    name = configured or C_VIRTIOFSD
    path = name if "/" in name else shutil.which(name)
    return path if path and os.access(path, os.X_OK) else None


def missing_tools() -> list[str]:
    """The host commands the daemons need that are not installed."""
    needed = ["unshare", "sh"] + (["setpriv"] if os.geteuid() == 0 else [])
    return [tool for tool in needed if shutil.which(tool, path=nc.HOST_ENV["PATH"]) is None]


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.setns, self.mount = self.lib.setns, self.lib.mount

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")


def _bind_in(pid: int, libc: _Libc, share: Share, owner: tuple[int, int]) -> None:
    """In a forked child: enter ``pid``'s mount namespace, put a tmpfs on /run (the daemon
    writes its pid file there) and bind the share's folder at :data:`SHARE_POINT`."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    libc.check(libc.setns(fd, CLONE_NEWNS), "setns")
    opts = f"mode=0755,uid={owner[0]},gid={owner[1]}"
    libc.check(
        libc.mount(b"nanoclaw", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()), "tmpfs"
    )
    os.mkdir(SHARE_POINT)
    point = SHARE_POINT.encode()
    libc.check(libc.mount(os.fsencode(share.source), point, None, MS_BIND | MS_REC, None), "bind")
    if share.readonly:
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        libc.check(libc.mount(None, point, None, flags, None), "read-only")


def _in_new_userns(pid: int, deadline: float) -> bool:
    mine = os.readlink("/proc/self/ns/user")
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/user") != mine:
                return True
        except OSError:
            return False
        time.sleep(0.0005)
    return False


def start(daemon: str, share: Share, socket_path: Path, *, user: nc.SandboxUser, log: Path) -> int:
    """Start the daemon serving ``share`` on a socket made at ``socket_path``; return its
    pid once it is ready to take QEMU's connection. The daemon is detached (its own
    session): it lives as long as the VM, not as this process."""
    if not share.source.is_dir():
        raise nc.UserError(
            f"cannot share {share.source} with the guest at {share.guest}: it is not a folder"
        )
    root = os.geteuid() == 0
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(socket_path))
        listener.listen(1)
        fd = listener.fileno()
        prefix = (
            ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
            if root
            else []
        )
        if root:
            ns = ["unshare", "--user", "--mount", "--", "sh", "-c", _SCRIPT, "virtiofsd"]
        else:
            mode = "ro" if share.readonly else "rw"
            ns = ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c"]
            ns += [_SCRIPT_USER, "virtiofsd", str(share.source), mode]
        argv = [
            *prefix, *ns, daemon,
            f"--fd={fd}", "-o", f"source={SHARE_POINT}", "-o", "cache=auto",
            "-o", "log_level=err", "-f",
        ]  # fmt: skip
        read_end, write_end = os.pipe()
        proc: subprocess.Popen[bytes] | None = None
        try:
            with log.open("ab") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=read_end,
                    stdout=err,
                    stderr=err,
                    env=dict(nc.HOST_ENV),
                    pass_fds=(fd,),
                    start_new_session=True,
                )
            os.close(read_end)
            read_end = -1
            if root:
                _map_and_bind(proc, share, user)
            os.write(write_end, b"go\n")
        except BaseException:
            if proc is not None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, 9)
            raise
        finally:
            if read_end >= 0:
                os.close(read_end)
            os.close(write_end)
    finally:
        listener.close()
    assert proc is not None
    return proc.pid


def _map_and_bind(proc: subprocess.Popen[bytes], share: Share, user: nc.SandboxUser) -> None:
    deadline = time.monotonic() + NS_WAIT_S
    if not _in_new_userns(proc.pid, deadline):
        proc.kill()
        raise nc.EngineUnavailable(
            "virtiofsd could not start in a user namespace (`unshare --user` failed); "
            "user namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1 "
            "when not root)"
        )
    for name, first in (("uid_map", user.uid), ("gid_map", user.gid)):
        with open(f"/proc/{proc.pid}/{name}", "w") as f:
            f.write(f"0 {first} {ID_RANGE}")
    libc = _Libc()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            _bind_in(proc.pid, libc, share, (user.uid, user.gid))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                os.write(2, f"virtiofsd setup for {share.source}: {exc}\n".encode())
            code = 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    if status != 0:
        proc.kill()
        raise nc.EngineUnavailable(
            f"could not share {share.source} with the guest (binding it into virtiofsd's "
            f"namespace failed)"
        )


def stop(pids: Sequence[int]) -> None:
    """Kill daemons this module started (their process groups)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"virtiofsd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.killpg(pid, 9)
