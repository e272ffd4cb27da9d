"""Bad input is a clear error naming where it is and how to fix it.

Never a traceback, never a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import CLI, Project


def _no_traceback(result: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")[-3000:]


@pytest.fixture
def bproject(tmp_path: Path) -> Project:
    """A project on bubblewrap (these checks happen before any sandbox starts)."""
    return Project(tmp_path / "project", "bubblewrap", tmp_path / "home")


@pytest.mark.parametrize(
    ("container", "where"),
    [
        ({"timeout": int("9" * 400)}, b"containerConfig.timeout"),
        ({"env": ["A=b\u0000c"]}, b"containerConfig.env"),
        ({"cpus": 1000, "runtime": "vibe"}, b"containerConfig.cpus"),
        ({"ram": 1, "runtime": "vibe"}, b"containerConfig.ram"),
        ({"timeout": "600000"}, b"containerConfig.timeout"),
        ({"keepWarm": -1, "runtime": "vibe"}, b"containerConfig.keepWarm"),
    ],
)
def test_bad_config_values_are_config_errors_at_check_and_at_run(
    bproject: Project, container: dict[str, object], where: bytes
) -> None:
    bproject.config("dev", container)
    for args in (("config", "check", "dev"), ("run", "dev", "--", "true")):
        result = bproject.cli(*args, timeout=60)
        _no_traceback(result)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert where in result.stdout + result.stderr
        assert b"groups/dev/config.json" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONTAINER_TIMEOUT", "9" * 400),
        ("MAX_CONCURRENT_CONTAINERS", "100000000"),
        ("VIBE_RAM", "1"),
        ("NANOCLAW_DEBUG", "maybe"),
    ],
)
def test_bad_variables_are_config_errors(bproject: Project, name: str, value: str) -> None:
    if name == "VIBE_RAM":
        bproject.config("dev", {"runtime": "vibe"})
    result = bproject.cli("config", "check", env={name: value}, timeout=60)
    _no_traceback(result)
    assert result.returncode == 3 and name.encode() in result.stdout + result.stderr


def test_deep_nesting_is_a_clear_error(bproject: Project) -> None:
    deep = "[" * 5000 + "]" * 5000
    (bproject.root / "groups/dev/config.json").write_text(
        '{"containerConfig": {"x": ' + deep + "}}"
    )
    result = bproject.cli("run", "dev", "--", "true", timeout=60)
    _no_traceback(result)
    assert result.returncode == 3 and b"levels deep" in result.stderr
    bproject.allowlist.parent.mkdir(parents=True, exist_ok=True)
    bproject.allowlist.write_text('{"allowedRoots": ' + deep + "}")
    bproject.config("dev", {"additionalMounts": [{"hostPath": str(bproject.home)}]})
    check = bproject.cli("config", "check", "dev", timeout=60)
    _no_traceback(check)
    assert b"levels deep" in check.stdout + check.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"A=\xff\xfe\n", b"not UTF-8"),
        (b'A="unterminated\n', b".env"),
    ],
)
def test_bad_dotenv_is_a_clear_error(bproject: Project, content: bytes, expected: bytes) -> None:
    (bproject.root / ".env").write_bytes(content)
    result = bproject.cli("config", "check", timeout=60)
    _no_traceback(result)
    assert result.returncode == 3 and expected in result.stdout + result.stderr
    assert b".env" in result.stdout + result.stderr


def test_dotenv_that_is_a_folder_is_reported(bproject: Project) -> None:
    (bproject.root / ".env").mkdir()
    result = bproject.cli("config", "check", timeout=60)
    _no_traceback(result)
    assert result.returncode == 3 and b".env" in result.stdout + result.stderr


def test_duplicate_keys_in_the_allowlist_block_every_mount(
    bproject: Project, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    bproject.allowlist.parent.mkdir(parents=True, exist_ok=True)
    bproject.allowlist.write_text(
        '{"allowedRoots": [{"path": "' + str(shared) + '", "allowReadWrite": false, '
        '"allowReadWrite": true}], "nonMainReadOnly": false}'
    )
    bproject.config("dev", {"additionalMounts": [{"hostPath": str(shared), "readonly": False}]})
    result = bproject.cli("config", "check", "dev", timeout=60)
    assert b"duplicate key" in result.stdout + result.stderr


def test_an_allowlist_fifo_hangs_nothing(bproject: Project, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    bproject.allowlist.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(bproject.allowlist)
    bproject.config("dev", {"additionalMounts": [{"hostPath": str(shared)}]})
    result = bproject.cli("config", "check", "dev", timeout=60)
    _no_traceback(result)
    assert b"FIFO" in result.stdout + result.stderr


def test_global_linked_outside_groups_is_refused(bproject: Project, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (bproject.root / "groups/global").rmdir()
    os.symlink(outside, bproject.root / "groups/global")
    result = bproject.cli("run", "dev", "--", "true", timeout=60)
    _no_traceback(result)
    assert result.returncode == 3 and b"groups/global" in result.stderr


def test_config_check_reports_linked_group_folders(bproject: Project, tmp_path: Path) -> None:
    outside = tmp_path / "linked"
    outside.mkdir()
    os.symlink(outside, bproject.root / "groups/linked")
    result = bproject.cli("config", "check", timeout=60)
    assert b"linked" in result.stdout and b"symbolic link" in result.stdout


def test_an_unreadable_project_root_is_a_clear_error(bproject: Project) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user")
    bproject.root.chmod(0o700)
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=1001",
            "--regid=1001",
            "--clear-groups",
            *CLI,
            "--root",
            str(bproject.root),
            "stats",
        ],
        capture_output=True,
        env={**bproject.env, "HOME": "/tmp"},
        timeout=60,
    )
    _no_traceback(result)
    assert result.returncode == 2 and b"cannot be read" in result.stderr


def test_a_missing_group_is_not_created(bproject: Project) -> None:
    result = bproject.cli("run", "typo-grp", "--", "true", timeout=60)
    _no_traceback(result)
    assert result.returncode == 2 and b"mkdir -p groups/typo-grp" in result.stderr
    assert not (bproject.root / "groups/typo-grp").exists()


def test_planning_creates_nothing(bproject: Project) -> None:
    before = sorted(p.relative_to(bproject.root) for p in bproject.root.rglob("*"))
    for args in (("config", "check"), ("doctor",), ("stats",)):
        bproject.cli(*args, timeout=120)
    after = sorted(p.relative_to(bproject.root) for p in bproject.root.rglob("*"))
    assert after == before


def test_bad_container_input_is_a_clear_error(bproject: Project) -> None:
    for data in (b"{not json", b"[]", json.dumps({"prompt": 1}).encode()):
        result = bproject.cli("run", "dev", stdin=data, timeout=60)
        _no_traceback(result)
        assert result.returncode == 2 and b"stdin" in result.stderr


def test_unknown_container_input_fields_reach_the_agent(bproject: Project) -> None:
    bproject.config("dev", {"agentCommand": ["sh", "-c", "cat"]})
    inp = {
        "prompt": "p",
        "groupFolder": "dev",
        "chatJid": "x",
        "isMain": False,
        "script": "echo hi",
    }
    result = bproject.cli("run", "dev", stdin=json.dumps(inp).encode(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["script"] == "echo hi"


def test_a_full_disk_during_a_clone_has_its_own_status(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    images = tmp_path / "images"
    images.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(images)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        proj = Project(tmp_path / "project", "qemu", tmp_path / "home")
        base = images / "base.raw"
        with base.open(
            "wb"
        ) as f:  # a base with 6 MiB of real data cannot be copied twice into 8 MiB
            f.write(os.urandom(6 << 20))
        result = proj.cli("prepare", "dev", env={"VIBE_IMAGES_DIR": str(images)}, timeout=120)
        _no_traceback(result)
        assert result.returncode == 4, result.stderr
        assert not (images / "dev.raw").exists()
        assert [p.name for p in images.iterdir()] == ["base.raw"]
    finally:
        subprocess.run(["umount", "-l", str(images)], check=False)
