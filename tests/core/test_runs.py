"""The run registry: a private folder per run, found by name, stopped, swept after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import runs
from nanoclaw_runtimes_core.errors import UserError

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nanoclaw_runtimes_core import runs
    with runs.registered(sys.argv[1], root=Path("/tmp"), group="dev", runtime="test") as run:
        (run.folder / "private").write_text("x")
        print("ready", flush=True)
        time.sleep(60)
    """
)


def _name() -> str:
    return f"nc-test-{uuid.uuid4().hex[:12]}"


def _child(name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_run_has_a_private_folder_found_by_name() -> None:
    name = _name()
    with runs.registered(name, root=Path("/x"), group="dev", runtime="rt") as run:
        assert run.folder == runs.runs_dir() / name
        assert run.folder.stat().st_mode & 0o777 == 0o700
        record = runs.find(name)
        assert record is not None
        assert (record.group, record.runtime, record.pid) == ("dev", "rt", os.getpid())
        assert json.loads((run.folder / "run.json").read_text())["name"] == name
        assert name in [r.name for r in runs.live_runs()]
    assert not run.folder.exists() and runs.find(name) is None


def test_stop_ends_a_run_of_another_process() -> None:
    name = _name()
    proc = _child(name)
    try:
        record = runs.find(name)
        assert record is not None and record.pid == proc.pid
        assert runs.request_stop(record, grace=0.5, wait_s=10) is True
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_the_folder_of_a_sigkilled_run_is_swept() -> None:
    name = _name()
    proc = _child(name)
    folder = runs.runs_dir() / name
    proc.kill()
    proc.wait()
    assert (folder / "private").exists(), "the killed run's folder stays until it is swept"
    assert runs.find(name) is None, "a dead run is not in progress"
    removed = runs.sweep()
    assert f"removed the folder of a run that was killed: {name}" in removed
    assert not folder.exists()


def test_the_sweep_leaves_folders_that_are_not_runs() -> None:
    mine = runs.runs_dir() / f"runtime-own-{uuid.uuid4().hex[:8]}"
    mine.mkdir()
    try:
        runs.sweep()
        assert mine.exists()
    finally:
        mine.rmdir()


def test_a_second_run_with_the_same_name_is_refused() -> None:
    name = _name()
    with (
        runs.registered(name, root=Path("/x"), group="dev", runtime="rt"),
        pytest.raises(UserError, match="is already in progress"),
    ):
        runs.ActiveRun(name, root=Path("/x"), group="dev", runtime="rt")
