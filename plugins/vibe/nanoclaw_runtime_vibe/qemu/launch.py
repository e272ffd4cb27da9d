"""Exec helper for the engine's host processes: ``python -m …qemu.launch [--ro DIR] -- ARGV``.

- Sets PR_SET_PDEATHSIG to SIGKILL, so the process dies with the Python
  process that started it (even a SIGKILLed one) instead of outliving it.
- ``--ro DIR`` (root only): in a private mount namespace, bind-mounts DIR on
  itself read-only before the exec, so a virtiofsd serving DIR cannot write to
  it whatever the guest asks — the read-only policy is enforced on the host,
  not by the guest's mount options. (QEMU 7.2's virtiofsd has no read-only
  option of its own.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1,
    2,
    4,
    32,
    4096,
    16384,
    1 << 18,
)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def read_only_view(libc: ctypes.CDLL, directory: str) -> None:
    """Make ``directory`` read-only for this process and its children (new mount namespace)."""
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    path = os.fsencode(directory)
    _check(libc.mount(path, path, None, MS_BIND | MS_REC, None), f"bind {directory}")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    _check(libc.mount(None, path, None, flags, None), f"remount {directory} read-only")


def main(argv: list[str]) -> int:
    """Parse ``[--ro DIR] -- ARGV…``, prepare, and exec ARGV (returns only on error)."""
    ro: str | None = None
    args = list(argv)
    while args and args[0] != "--":
        if args[0] == "--ro" and len(args) > 1:
            ro = args[1]
            del args[:2]
        else:
            print(f"launch: unknown argument {args[0]!r}", file=sys.stderr)
            return 2
    if len(args) < 2:
        print("usage: launch [--ro DIR] -- PROGRAM [ARGS…]", file=sys.stderr)
        return 2
    command = args[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        return 1
    try:
        if ro is not None:
            read_only_view(libc, ro)
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
