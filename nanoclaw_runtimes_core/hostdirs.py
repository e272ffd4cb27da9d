"""This user's private runs folder on this host, found with nothing but :mod:`os`.

It is where runs keep their records (:mod:`.runs`) and where the resident helper
listens (:mod:`.resident`), so the launcher finds it before anything heavier is imported.
"""

from __future__ import annotations

import os
import stat

RUNS_DIR_ENV = "NANOCLAW_RUNS_DIR"
"""Another runs folder (a test's own, so its ``ps`` and ``stop`` see only its runs)."""


class NotPrivate(ValueError):
    """The runs folder exists but is not this user's private folder."""


def runs_folder(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The runs folder, created (0700) and checked: ours, a real folder, private.

    ``NANOCLAW_RUNS_DIR`` if set; else ``/run/nanoclaw-runtimes`` for root, else
    ``$XDG_RUNTIME_DIR/nanoclaw-runtimes``, else ``$TMPDIR/nanoclaw-runtimes-<uid>``.
    """
    env = os.environ if environ is None else environ
    uid = os.getuid()
    override = env.get(RUNS_DIR_ENV)
    runtime = env.get("XDG_RUNTIME_DIR")
    if override:
        path = override
    elif uid == 0 and os.access("/run", os.W_OK):
        path = "/run/nanoclaw-runtimes"
    elif runtime and os.path.isdir(runtime):
        path = os.path.join(runtime, "nanoclaw-runtimes")
    else:
        path = os.path.join(env.get("TMPDIR") or "/tmp", f"nanoclaw-runtimes-{uid}")
    try:  # noqa: SIM105 (contextlib would cost the launcher its imports)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise NotPrivate(
            f"{path} is not a folder of this user (a link, a file or someone else's); "
            "remove it so nanoclaw-runtimes can make its runs folder"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
