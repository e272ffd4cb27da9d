"""The core's own test plugin (fixtures and the runtime contract suite) for every test here."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

pytest_plugins = ["nanoclaw_runtimes_core.testing"]

# A developer's own NANOCLAW_RESIDENT would hand the suite's CLI runs to helpers that outlive
# it; the tests of the helper set it themselves.
os.environ.pop("NANOCLAW_RESIDENT", None)

# Started in the background of a shell without job control, the suite inherits SIGINT ignored,
# and so would every CLI it starts: the tests of Ctrl-C need Python's own handling of it.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _session_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches (entry points, engine probes) of this test session only: the suite neither
    reads what the user's own runs cached nor leaves its test runtimes in the user's cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
