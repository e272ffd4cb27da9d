"""Files a sandbox leaves on the host are never privileged, and it sees only its own mounts."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import CLI, Project


def test_files_made_inside_are_not_owned_by_root(project: Project) -> None:
    project.sh("dev", "echo hi > /workspace/group/made; mkdir /workspace/group/dir", check=0)
    for name in ("made", "dir"):
        st = os.lstat(project.root / "groups/dev" / name)
        assert st.st_uid != 0 or os.geteuid() != 0, f"{name} is owned by root on the host"
        if os.geteuid() != 0:
            assert st.st_uid == os.getuid()


def test_a_setuid_binary_made_inside_grants_nothing_on_the_host(project: Project) -> None:
    script = (
        'id_bin=$(command -v id); cp "$id_bin" /workspace/group/suid-id && '
        "chmod 4755 /workspace/group/suid-id; ls -l /workspace/group/suid-id"
    )
    project.sh("dev", script)
    path = project.root / "groups/dev/suid-id"
    if not path.exists():
        return  # refused outright inside: nothing was left
    st = os.lstat(path)
    if st.st_mode & stat.S_ISUID:
        assert st.st_uid != 0, "a setuid-root binary was left on the host"
    if os.geteuid() == 0 and os.access(path, os.X_OK):
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(path)],
            capture_output=True,
            timeout=10,
        )
        assert b"euid=0" not in out.stdout and not out.stdout.startswith(b"uid=0"), out.stdout


def test_a_device_node_made_inside_is_never_a_device_on_the_host(project: Project) -> None:
    project.sh("dev", "mknod /workspace/group/blk b 254 0; mknod /workspace/group/chr c 1 3; true")
    for name in ("blk", "chr"):
        path = project.root / "groups/dev" / name
        if os.path.lexists(path):
            mode = os.lstat(path).st_mode
            assert not stat.S_ISBLK(mode) and not stat.S_ISCHR(mode), (
                f"{name} is a device on the host"
            )


def test_other_groups_and_the_host_are_invisible(project: Project) -> None:
    (project.root / "groups/other/private.txt").write_text("other-group-canary")
    marker = project.home / "home-canary.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("home-canary")
    run = project.sh(
        "dev",
        "grep -rls -e other-group-canary -e home-canary /workspace /home /root /tmp /mnt /opt /srv "
        "/var /etc 2>/dev/null | head; ls /workspace",
        check=0,
        timeout=300,
    )
    assert b"other-group-canary" not in run.stdout and b"private.txt" not in run.stdout
    assert b"home-canary" not in run.stdout
    assert b"project" not in run.stdout  # only the main group sees the project


def test_read_only_mounts_are_read_only(project: Project) -> None:
    (project.root / "groups/global/shared.txt").write_text("shared")
    run = project.sh(
        "dev", "echo x >> /workspace/global/shared.txt && echo WROTE || echo REFUSED", check=0
    )
    assert b"REFUSED" in run.stdout
    assert (project.root / "groups/global/shared.txt").read_text() == "shared"


def test_the_main_group_sees_the_project_read_only_with_env_masked(project: Project) -> None:
    (project.root / ".env").write_text("ANTHROPIC_API_KEY=sk-host-secret-value\n")
    (project.root / "credentials.json").write_text('{"token": "sk-credential-file"}')
    run = project.sh(
        "main",
        "cat /workspace/project/.env; cat /workspace/project/credentials.json; "
        "echo x > /workspace/project/new && echo WROTE || echo REFUSED; ls /workspace/project",
        check=0,
    )
    assert b"sk-host-secret-value" not in run.stdout
    assert b"sk-credential-file" not in run.stdout
    assert b"REFUSED" in run.stdout
    assert b"groups" in run.stdout  # the project itself is visible


@pytest.mark.parametrize("as_user", [1001])
def test_as_a_non_root_user_files_belong_to_that_user(project: Project, as_user: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start the CLI as another user")
    if project.sandbox == "qemu":
        pytest.skip("the QEMU engine's virtiofsd needs root on Debian 12")
    top = Path(tempfile.mkdtemp(prefix="nanoclaw-sec-"))
    try:
        top.chmod(0o755)
        mine = Project(top / "project", project.sandbox, top / "home")
        subprocess.run(["chown", "-R", f"{as_user}:{as_user}", str(top)], check=True)
        env = {**mine.env, "HOME": str(mine.home)}
        cmd = [
            "setpriv",
            f"--reuid={as_user}",
            f"--regid={as_user}",
            "--clear-groups",
            *CLI,
            "--root",
            str(mine.root),
            "run",
            "dev",
            "--",
            "sh",
            "-c",
            "id -u; echo hi > made",
        ]
        out = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert os.lstat(mine.root / "groups/dev/made").st_uid == as_user
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)
