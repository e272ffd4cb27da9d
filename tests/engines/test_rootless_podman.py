"""Rootless Podman for real: the CLI run by an unprivileged user with subordinate ids.

``scripts/engines.sh start`` (as root) makes that user, gives it its own containers.conf and the
busybox image, and exports ``NANOCLAW_ROOTLESS_USER``. This module builds wheels of the core and
the container runtime, installs them into a venv of the system's ``python3`` that the user owns
(this process's own interpreter may sit in a folder only root can enter) and drives the CLI as
that user: ``--userns=keep-id`` maps the agent to it, so it writes exactly its read-write mounts
and what it leaves is the user's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

from .conftest import HOW, MODE
from .helpers import BUSYBOX, REPO

USER = os.environ.get("NANOCLAW_ROOTLESS_USER", "")
SYSTEM_PYTHON = "/usr/bin/python3"


class Rootless:
    """A project of the rootless user, and its CLI."""

    def __init__(self, user: pwd.struct_passwd, top: Path) -> None:
        self.user, self.top = user, top
        self.venv = top / "venv"
        self.root = top / "project"
        self.env = {
            "HOME": user.pw_dir,
            "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }

    def as_user(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", self.user.pw_name, "--", "env", "-i", "-C", str(self.top)]
        command += [f"{k}={v}" for k, v in self.env.items()]
        return subprocess.run(
            [*command, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        script = str(self.venv / "bin" / "nanoclaw-runtimes")
        return self.as_user(script, "--root", str(self.root), *args, timeout=timeout)

    def containers(self) -> list[str]:
        done = self.as_user("podman", "ps", "--all", "--format", "{{.Names}}", timeout=60)
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("nc-")]


def _unavailable() -> str:
    if os.geteuid() != 0:
        return "the rootless podman tests switch users: they need root"
    if not USER:
        return "NANOCLAW_ROOTLESS_USER is not set (scripts/engines.sh start makes that user)"
    for program in ("runuser", "podman", SYSTEM_PYTHON):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return ""


@pytest.fixture(scope="module")
def rootless() -> Iterator[Rootless]:
    why = _unavailable()
    if why:
        message = f"rootless podman is not available: {why}; {HOW}"
        if MODE == "required":
            pytest.fail(message)
        pytest.skip(message)
    user = pwd.getpwnam(USER)
    top = Path(tempfile.mkdtemp(prefix="nanoclaw-rootless-", dir="/tmp"))
    try:
        wheels = top / "wheels"
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(wheels),
                str(REPO),
                str(REPO / "plugins" / "container"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert built.returncode == 0, built.stderr[-2000:]
        os.chown(top, user.pw_uid, user.pw_gid)
        for path in [wheels, *wheels.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        helper = Rootless(user, top)
        # The wheels are built without their dependencies: those come from the index.
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        for argv in (
            [SYSTEM_PYTHON, "-m", "venv", str(helper.venv)],
            [
                str(helper.venv / "bin" / "pip"),
                "install",
                "-q",
                *map(str, wheels.iterdir()),
                *project["dependencies"],
            ],
        ):
            done = helper.as_user(*argv, timeout=600)
            assert done.returncode == 0, (argv, done.stderr[-2000:])
        group = helper.root / "groups" / "dev"
        config = (
            '{"containerConfig": {"runtime": "container", "engine": "podman", '
            f'"image": "{BUSYBOX}"}}}}\n'
        )
        made = helper.as_user(
            "sh", "-c", 'mkdir -p "$1/groups/global" "$2" && printf %s "$3" > "$2/config.json"',
            "sh", str(helper.root), str(group), config,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        yield helper
        left = helper.containers()
        assert not left, f"rootless podman containers left by the tests: {left}"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _cgroup_v1() -> bool:
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def test_the_agent_runs_as_the_user_and_writes_only_its_read_write_mounts(
    rootless: Rootless,
) -> None:
    script = (
        "id -u; echo hi > /workspace/group/made-inside; "
        "if touch /workspace/global/x 2>/dev/null; then echo global-writable; "
        "else echo global-read-only; fi"
    )
    done = rootless.cli("run", "dev", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(rootless.user.pw_uid), "global-read-only"], done.stdout
    made = rootless.root / "groups" / "dev" / "made-inside"
    assert made.read_text() == "hi\n"
    owner = made.stat()
    assert (owner.st_uid, owner.st_gid) == (rootless.user.pw_uid, rootless.user.pw_gid)
    assert not (rootless.root / "groups" / "global" / "x").exists()
    if _cgroup_v1():  # said, since it cannot be done: rootless podman on v1 ignores limits
        assert "rootless podman on cgroup v1 ignores them" in done.stderr, done.stderr
    assert rootless.containers() == []


def test_a_timeout_ends_the_run_at_once_and_leaves_no_container(rootless: Rootless) -> None:
    started = time.monotonic()
    done = rootless.cli("run", "--timeout", "2000", "dev", "--", "sleep", "100")
    took = time.monotonic() - started
    assert done.returncode == 124, done.stderr
    assert "timed out after 2000ms" in done.stderr
    assert took < 12, took  # --init: the stop takes milliseconds, not the 10 s grace
    assert rootless.containers() == []
