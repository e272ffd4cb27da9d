"""An agent rewrites its own config.json: nothing it writes decides how a later run is made."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from .conftest import CLI, Project


def test_a_config_written_from_inside_is_refused_and_the_trusted_one_stays(
    project: Project,
) -> None:
    project.config("dev", {"env": ["MODE=trusted"]})
    evil = {
        "containerConfig": {
            "env": ["MODE=evil", "LD_PRELOAD=/workspace/group/x.so"],
            "timeout": 999999,
        }
    }
    run = project.sh(
        "dev",
        "cat > /workspace/group/config.json <<'EOF' 2>/dev/null\n"
        f"{json.dumps(evil)}\nEOF\necho done",
    )
    assert b"done" in run.stdout
    # Where the engine can mask it, the sandbox could not even write it; either way the host noticed
    # or the file is unchanged.
    live = json.loads((project.root / "groups/dev/config.json").read_text())
    if live == evil:
        assert b"config.json" in run.stderr and b"config trust dev" in run.stderr
    later = project.sh("dev", 'echo "mode=$MODE preload=${LD_PRELOAD:-none}"', check=0)
    assert b"mode=trusted preload=none" in later.stdout
    if live == evil:
        assert b"last trusted version stays in force" in later.stderr
        check = project.cli("config", "check", "dev")
        assert check.returncode == 3 and b"config trust dev" in check.stdout
        project.cli("config", "trust", "dev", check=0)
        accepted = project.sh("dev", 'echo "mode=$MODE"', check=0)
        assert b"mode=evil" in accepted.stdout


def test_the_sandbox_sees_its_config_read_only_where_the_engine_masks(project: Project) -> None:
    project.config("dev", {"env": ["MODE=trusted"]})
    run = project.sh("dev", "echo x >> /workspace/group/config.json && echo WROTE || echo REFUSED")
    assert b"REFUSED" in run.stdout, run.stdout
    assert json.loads((project.root / "groups/dev/config.json").read_text()) == {
        "containerConfig": {"env": ["MODE=trusted"]}
    }


def test_creating_a_config_from_inside_changes_nothing(project: Project) -> None:
    (project.root / "groups/dev/config.json").unlink(missing_ok=True)
    evil = json.dumps({"containerConfig": {"network": True, "env": ["MODE=evil"]}})
    project.sh("dev", f"printf '%s' '{evil}' > /workspace/group/config.json; echo ok", check=0)
    later = project.sh("dev", 'echo "mode=${MODE:-unset}"', check=0)
    assert b"mode=unset" in later.stdout
    assert b"was created by the group's sandbox" in later.stderr or b"changed" in later.stderr


def test_a_change_made_by_a_killed_run_is_refused(project: Project) -> None:
    project.config("dev", {"env": ["MODE=trusted"]})
    evil = json.dumps({"containerConfig": {"env": ["MODE=evil"]}})
    # The sandbox may not be able to write the file (masked); try through a rename too.
    script = (
        f"printf '%s' '{evil}' > /workspace/group/config.new; "
        "mv -f /workspace/group/config.new /workspace/group/config.json 2>/dev/null; "
        "printf '%s' started > /workspace/group/started; sleep 60"
    )
    proc = subprocess.Popen(
        [*CLI, "--root", str(project.root), "run", "dev", "--", "sh", "-c", script],
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = project.root / "groups/dev/started"

    deadline = time.monotonic() + 90
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    later = project.sh("dev", 'echo "mode=$MODE"', check=0)
    assert b"mode=trusted" in later.stdout


def test_another_groups_disk_cannot_be_named(project: Project) -> None:
    if project.sandbox != "qemu":
        pytest.skip("group disks are the vibe runtime's")
    project.sh("other", "echo private > /root/secret-of-other; sync", check=0)
    project.config("dev", {"vibeImage": "other.raw"})
    run = project.sh("dev", "cat /root/secret-of-other")
    assert run.returncode == 3, run.stderr
    assert b"vibeImage" in run.stderr and b"other" in run.stderr
    assert b"private" not in run.stdout
