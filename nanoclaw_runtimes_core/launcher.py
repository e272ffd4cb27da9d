"""The console scripts' entry points: a ``run`` goes to the resident helper when
``NANOCLAW_RESIDENT`` asks for one (see :mod:`.resident`), everything else to the CLI.

Only :mod:`os` and :mod:`sys` are imported here, so without a helper this costs nothing.
"""

from __future__ import annotations

import os
import sys

from .resident.wire import ENV


def main() -> int:
    """``nanoclaw-runtimes``."""
    return _launch("cli")


def docker_main() -> int:
    """``nanoclaw-runtimes-docker``."""
    return _launch("docker")


def _launch(entry: str) -> int:
    if os.environ.get(ENV):
        from .resident.client import run_via_helper

        status = run_via_helper(entry, sys.argv)
        if status is not None:
            # Nothing here needs the interpreter's finalisation (no thread, no atexit, no file
            # but the standard streams), which would cost the run a few milliseconds more.
            for stream in (sys.stdout, sys.stderr):
                try:  # noqa: SIM105 (contextlib would cost the launcher its imports)
                    stream.flush()
                except (OSError, ValueError):
                    pass  # a reader that went away: nothing left to tell it
            os._exit(status & 0xFF)
    if entry == "docker":
        from .docker_cli import main as command
    else:
        from .cli import main as command
    return command()
