"""Set-up of the engine's host daemons, run in the forked child before ``exec``.

:func:`child_setup` returns a ``preexec_fn`` for :class:`subprocess.Popen` that

- sets PR_SET_PDEATHSIG to SIGKILL, so the daemon dies with the Python process
  that started it (even a SIGKILLed one) instead of outliving it;
- with ``read_only=DIR`` (root only): in a private mount namespace, bind-mounts
  DIR on itself read-only, so a virtiofsd serving DIR cannot write to it
  whatever the guest asks — the read-only policy is enforced on the host, not
  by the guest's mount options. (QEMU 7.2's virtiofsd has no read-only option
  of its own.)

This used to be a ``python -m …launch`` wrapper around each daemon; a Python
start-up per share cost ~0.15 s of CPU each, 0.3-0.4 s per boot on two cores.
The C library functions are looked up in the parent, so the child only makes
system calls.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

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


def child_setup(read_only: str | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: die with the parent; with ``read_only``, see that folder read-only."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Touch the functions here, in the parent: the child then only calls them.
    for name in ("prctl", "unshare", "mount"):
        getattr(libc, name)

    def setup() -> None:  # pragma: no cover - runs in the forked child
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if read_only is not None:
            read_only_view(libc, read_only)

    return setup
