"""The test kit itself: a clean project, a deadline that fails instead of hanging, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from nanoclaw_runtimes_core.testing import NanoclawProject, clean_environ
from nanoclaw_runtimes_core.testing.processes import ArgvWatch, descendants, processes_with
from nanoclaw_runtimes_core.testing.watchdog import DeadlineExceeded, call_with_deadline


@pytest.fixture
def developer_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CONTAINER_RUNTIME", "developers-own")
    monkeypatch.setenv("NANOCLAW_MOUNT_ALLOWLIST", "/home/dev/.config/nanoclaw/allow.json")
    monkeypatch.setenv("MAX_CONCURRENT_CONTAINERS", "99")
    monkeypatch.setenv("VIBE_CPUS", "64")
    yield


def test_the_project_fixture_hides_the_developers_settings(
    developer_settings: None, nanoclaw_project: NanoclawProject, nanoclaw_environ: dict[str, str]
) -> None:
    for name in ("CONTAINER_RUNTIME", "MAX_CONCURRENT_CONTAINERS"):
        assert name not in os.environ and name not in nanoclaw_environ
    assert os.environ["NANOCLAW_MOUNT_ALLOWLIST"] == str(nanoclaw_project.allowlist_path)
    assert nanoclaw_environ["NANOCLAW_MOUNT_ALLOWLIST"] == str(nanoclaw_project.allowlist_path)
    assert not nanoclaw_project.allowlist_path.exists()
    assert nanoclaw_project.allowlist_path.parent != nanoclaw_project.root
    assert (nanoclaw_project.root / "groups" / "global").is_dir()
    assert (nanoclaw_project.root / "data").is_dir()
    assert nanoclaw_project.base.stat().st_mode & 0o005 == 0o005, "a sandbox user cannot enter it"


def test_clean_environ_drops_the_variables_of_given_settings_classes() -> None:
    from .conftest import SubprocSettings

    env = clean_environ(
        {"SUBPROC_LEVEL": "3", "PATH": "/bin", "NANOCLAW_DEBUG": "1", "HOME": "/root"},
        settings_classes=[SubprocSettings],
        allowlist="/x/allow.json",
    )
    assert env == {"PATH": "/bin", "HOME": "/root", "NANOCLAW_MOUNT_ALLOWLIST": "/x/allow.json"}


def test_a_call_past_its_deadline_fails_and_its_processes_are_killed() -> None:
    marker = f"nc-kit-hang-{time.monotonic_ns()}"

    def hang() -> int:
        return subprocess.run(
            [sys.executable, "-c", "import time; time.sleep(300)", marker]
        ).returncode

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="past its own timeout") as err:
        call_with_deadline(hang, 1.0, what="a hanging run")
    assert time.monotonic() - started < 10
    assert marker in str(err.value), "the message names what was killed"
    assert not processes_with(marker)
    assert call_with_deadline(lambda: 42, 5, what="a quick call") == 42
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 // 0, 5, what="a failing call")


def test_argv_watch_sees_a_secret_on_a_command_line() -> None:
    secret = f"sk-kit-{time.monotonic_ns()}"
    with ArgvWatch([secret]) as watch:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)", secret])
        assert proc.pid in descendants()
        proc.wait()
    assert watch.hits and secret not in watch.hits[0] and "<SECRET>" in watch.hits[0]
    with ArgvWatch(["never-there-xyz"]) as quiet:
        time.sleep(0.2)
    assert quiet.scans > 2 and not quiet.hits
