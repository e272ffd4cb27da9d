"""Fixtures of the container runtime's tests: a throw-away project on real bubblewrap."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ENGINE_ENV, TestProject, descendants, kill_all

HOST_CANARY = "NC_HOST_CANARY_7f3a"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs bwrap (scripts/setup.sh installs it)."""
    if shutil.which("bwrap") is None:
        skip = pytest.mark.skip(
            reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
        )
        for item in items:
            if "tests/container" in str(item.path):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cache_home(_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe answers go to a cache of the test session, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_dir))


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """A test leaves no process behind; whatever it left is killed and fails it."""
    before = set(descendants())
    yield
    left = [p for p in descendants() if p not in before]
    kill_all(left)
    assert not left, f"processes left running: {left}"


def _environ(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINER_", "NANOCLAW_"))}
    env.update(ENGINE_ENV)
    env["NANOCLAW_MOUNT_ALLOWLIST"] = str(home / "mount-allowlist.json")
    env[HOST_CANARY] = "host-only-value"
    return env


@pytest.fixture
def project(tmp_path: Path) -> TestProject:
    """A project under pytest's temporary folder (mode 0700, root's when run as root: the
    sandbox user cannot reach it, so its sources are staged)."""
    return TestProject(tmp_path / "project", _environ(tmp_path))


@pytest.fixture
def open_project() -> Iterator[TestProject]:
    """A project every user can reach (folders 0755), so no source needs staging."""
    top = Path(tempfile.mkdtemp(prefix="nc-open-"))
    top.chmod(0o755)
    try:
        yield TestProject(top / "project", _environ(top))
    finally:
        shutil.rmtree(top, ignore_errors=True)
