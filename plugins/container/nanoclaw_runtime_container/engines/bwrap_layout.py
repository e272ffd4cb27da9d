"""The command line of one bubblewrap sandbox, with every value off the command line.

bwrap runs as the sandbox user. Its options (the environment among them) reach
it NUL-separated on a pipe (``--args FD``), so no value appears in any host
process's argv or environment; files it shows come as descriptors this process
opened (``--bind-fd``) or as data on a pipe (``--ro-bind-data``).

bubblewrap resolves a bound descriptor's path again, as the sandbox user. A
folder that user cannot reach (a project under ``/root``, mode 0700, when the
CLI runs as root) is therefore *staged*: a first bwrap, still root and with only
a private mount namespace, binds each such source under a fresh ``/tmp`` that
only it and its children see, then drops to the sandbox user and starts the real
sandbox, which binds them from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import nanoclaw_runtimes_core as nc

STAGE = "/tmp"
"""Where a staging bwrap shows the sources it binds (its own tmpfs, private to it)."""
PIPE_MAX = Path("/proc/sys/fs/pipe-max-size")


class Layout:
    """Collects one sandbox's bwrap options, the descriptors they use and, when ``staged``,
    the staging bwrap's options. :meth:`close` closes every descriptor opened here."""

    def __init__(self, *, staged: bool) -> None:
        self.staged = staged
        self.inner: list[str] = []
        self.outer: list[str] = []
        self.fds: list[int] = []
        self._staged = 0

    # ------------------------------------------------------------------ options

    def add(self, *words: str) -> None:
        """Options for the sandbox, as they are."""
        self.inner.extend(words)

    def system(self, path: Path, dest: str) -> None:
        """A host system path (``/usr``, an ``/etc`` entry) shown read-only at ``dest``."""
        self.inner += ["--ro-bind", str(path), dest]

    def source(self, path: Path, dest: str, *, readonly: bool) -> None:
        """A host file or folder shown at ``dest``: a descriptor this process opens now, so
        it is this process that looks the path up."""
        try:
            fd = self._keep(os.open(path, os.O_PATH | os.O_CLOEXEC))
        except OSError as exc:
            raise nc.UserError(
                f"{path} cannot be shown in the sandbox at {dest}: {exc.strerror or exc}; "
                "check that it exists"
            ) from None
        flag = "--ro-bind" if readonly else "--bind"
        if not self.staged:
            self.inner += [f"{flag}-fd", str(fd), dest]
            return
        staged = f"{STAGE}/{self._staged}"
        self._staged += 1
        self.outer += [f"{flag}-fd", str(fd), staged]
        self.inner += [flag, staged, dest]

    def data(self, content: bytes, dest: str, *, perms: int = 0o444) -> None:
        """A read-only file holding ``content`` at ``dest`` (an empty one for ``b""``)."""
        if content:
            fd = self._keep(self.pipe(content))
        else:
            fd = self._keep(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        self.inner += ["--perms", f"{perms:04o}", "--ro-bind-data", str(fd), dest]

    def empty_folder(self, dest: str) -> None:
        """An empty read-only folder over ``dest``."""
        self.inner += ["--perms", "0555", "--tmpfs", dest, "--remount-ro", dest]

    # ------------------------------------------------------------------ launching

    def argv(self, bwrap: str, command: list[str], *, drop_to: tuple[int, int] | None) -> list[str]:
        """The whole command line. ``drop_to`` (uid, gid) is given when staged: the staging bwrap
        runs as root, and the sandbox's as that user, inside the staging bwrap's PID namespace."""
        inner = [bwrap, "--args", str(self._keep(self.pipe(_nul(self.inner)))), "--", *command]
        if not self.staged:
            return inner
        assert drop_to is not None
        uid, gid = drop_to
        # Its own PID namespace: when the staging bwrap dies (with us), the kernel kills every
        # process in it. A parent-death signal could not reach the sandbox user's bwrap: the
        # staging bwrap drops its capabilities, so it may not signal another uid. It keeps the
        # host's /proc: a procfs of its own would carry bwrap's read-only covers, and the kernel
        # lets the sandbox mount its procfs only where one is fully visible.
        outer = [
            "--dev-bind",
            "/",
            "/",
            "--unshare-pid",
            "--perms",
            "0755",
            "--tmpfs",
            STAGE,
            "--die-with-parent",
            *self.outer,
        ]
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return [bwrap, "--args", str(self._keep(self.pipe(_nul(outer)))), "--", *drop, *inner]

    def pipe(self, data: bytes) -> int:
        """The read end of a pipe already holding all of ``data`` (its write end closed)."""
        read, write = os.pipe()
        try:
            if len(data) > 65536:
                limit = _pipe_max()
                if len(data) > limit:
                    raise nc.UserError(
                        f"the sandbox's options and environment take {len(data)} bytes, more "
                        f"than the {limit} a pipe holds here; shorten containerConfig.env or "
                        "CONTAINER_ENV"
                    )
                fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, len(data))
            view = memoryview(data)
            while view:
                view = view[os.write(write, view) :]
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        return read

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        """Close every descriptor (the sandbox has its own copies once started)."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nul(words: list[str]) -> bytes:
    """The words NUL-separated; a word holding a NUL would become two options: refused."""
    for word in words:
        if "\0" in word:
            raise nc.UserError(
                "a value for the sandbox (an environment entry or a path) contains a NUL "
                "character, which cannot be passed on; remove it from containerConfig.env / "
                "CONTAINER_ENV"
            )
    return b"".join(w.encode("utf-8", "surrogateescape") + b"\0" for w in words)


def _pipe_max() -> int:
    try:
        return int(PIPE_MAX.read_text())
    except (OSError, ValueError):
        return 65536
