"""The host never follows what a sandbox planted in its folders, and the next run still works."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .conftest import Project


def test_logs_replaced_by_a_link_are_not_followed(project: Project, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    # From inside the sandbox the agent replaces logs/ with a link to a host folder of its choosing.
    planted = project.sh(
        "dev", f"rm -rf /workspace/group/logs; ln -s {victim} /workspace/group/logs", check=0
    )
    later = project.sh("dev", "echo next-run-works", check=0)
    assert b"next-run-works" in later.stdout
    assert list(victim.iterdir()) == [], "the host wrote a run log through a planted link"
    logs = project.root / "groups/dev/logs"
    assert logs.is_dir() and not logs.is_symlink()
    assert any(p.name.startswith("container-") for p in logs.iterdir())
    assert b"symbolic link" in planted.stderr  # found when that run's log was written


def test_logs_replaced_by_a_file_do_not_break_later_runs(project: Project) -> None:
    project.sh("dev", "rm -rf /workspace/group/logs; echo x > /workspace/group/logs", check=0)
    later = project.sh("dev", "echo fine", check=0)
    assert b"fine" in later.stdout


def test_ipc_folders_replaced_by_dangling_links_are_repaired(project: Project) -> None:
    project.sh(
        "dev",
        "rm -rf /workspace/ipc/messages; ln -s /nonexistent/place /workspace/ipc/messages; "
        "rm -rf /workspace/ipc/tasks; ln -s /etc /workspace/ipc/tasks",
        check=0,
    )
    later = project.sh("dev", "ls -ld /workspace/ipc/messages /workspace/ipc/tasks", check=0)
    for name in ("messages", "tasks"):
        path = project.root / "data/ipc/dev" / name
        assert path.is_dir() and not path.is_symlink()
    assert b"symbolic link" in later.stderr


def test_config_linked_to_dev_zero_is_never_read_and_the_run_goes_on(project: Project) -> None:
    project.config("dev", {"env": ["MODE=trusted"]})
    project.sh(
        "dev", "rm -f /workspace/group/config.json; ln -s /dev/zero /workspace/group/config.json"
    )
    cfg = project.root / "groups/dev/config.json"
    if not cfg.is_symlink():
        cfg.unlink()  # the sandbox could not (masked); plant it as it would have
        os.symlink("/dev/zero", cfg)
    started = time.monotonic()
    later = project.sh("dev", 'echo "mode=$MODE"', timeout=60)
    assert time.monotonic() - started < 30
    assert later.returncode == 0, later.stderr
    assert b"mode=trusted" in later.stdout
    assert b"symbolic link" in later.stderr and b"last trusted version" in later.stderr
    check = project.cli("config", "check", "dev", timeout=60)
    assert check.returncode == 3 and b"symbolic link" in check.stdout


def test_a_link_as_config_of_a_group_never_run_is_a_clear_error(project: Project) -> None:
    cfg = project.root / "groups/other/config.json"
    os.symlink("/dev/zero", cfg)
    result = project.sh("other", "true", timeout=60)
    assert result.returncode == 3 and b"symbolic link" in result.stderr


def test_config_as_a_fifo_hangs_nothing(project: Project) -> None:
    cfg = project.root / "groups/dev/config.json"
    cfg.unlink(missing_ok=True)
    os.mkfifo(cfg)
    for args in (("run", "dev", "--", "true"), ("config", "check"), ("stats",), ("doctor",)):
        started = time.monotonic()
        result = project.cli(*args, timeout=60)
        assert time.monotonic() - started < 30, args
        if args[0] != "stats":  # stats leaves out a group it cannot read
            assert b"FIFO" in result.stdout + result.stderr, (args, result.stdout, result.stderr)


def test_a_huge_config_is_refused(project: Project) -> None:
    cfg = project.root / "groups/dev/config.json"
    cfg.write_bytes(b'{"containerConfig": {}, "$pad": "' + b"x" * (2 << 20) + b'"}')
    result = project.sh("dev", "true", timeout=60)
    assert result.returncode == 3 and b"bytes" in result.stderr
