"""The CLI run by an ordinary user (uid 1000, through setpriv) on a project that user owns:
the sandbox acts as that user, limits are reported as not enforced, nothing is left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ENGINE_ENV, cmdline, descendants, live_pids, wait_until, watchdog

USER = 1000
SITE = sysconfig.get_paths()["purelib"]
SYSTEM_PYTHON = "/usr/bin/python3"
# The system interpreter, with this environment's packages: the venv's own interpreter may
# live where uid 1000 cannot reach it (under /root).
BOOT = (
    "import site, sys; site.addsitedir(sys.argv.pop(1)); "
    "from nanoclaw_runtimes_core.cli import main; sys.exit(main())"
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become uid 1000")


class UserProject:
    """A project owned by uid 1000 in a folder it can reach, and the CLI run as that user."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.root = top / "project"
        self.home = top / "home"
        for folder in ("groups/global", "groups/dev", "groups/main", "home"):
            (self.root / folder if folder != "home" else self.home).mkdir(parents=True)
        for path in (self.root, self.home):
            for folder, dirs, files in os.walk(path):
                for name in (folder, *(os.path.join(folder, n) for n in dirs + files)):
                    os.lchown(name, USER, USER)
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "TMPDIR": str(self.home),
            "NANOCLAW_MOUNT_ALLOWLIST": str(self.home / "allowlist.json"),
            **ENGINE_ENV,
        }

    def argv(self, *args: str) -> list[str]:
        return [
            "setpriv",
            f"--reuid={USER}",
            f"--regid={USER}",
            "--clear-groups",
            "--",
            SYSTEM_PYTHON,
            "-c",
            BOOT,
            SITE,
            "--root",
            str(self.root),
            *args,
        ]

    def cli(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args), input=stdin, capture_output=True, env=self.env, timeout=120, cwd="/"
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
        )


@pytest.fixture
def user_project() -> Iterator[UserProject]:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run the CLI as uid {USER}")
    top = Path(tempfile.mkdtemp(prefix="nc-user-"))
    top.chmod(0o755)
    project = UserProject(top)
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={USER}",
            f"--regid={USER}",
            "--clear-groups",
            "--",
            SYSTEM_PYTHON,
            "-c",
            "import site, sys; site.addsitedir(sys.argv[1]); "
            "import nanoclaw_runtime_container, nanoclaw_runtimes_core",
            SITE,
        ],
        capture_output=True,
        env=project.env,
        cwd="/",
    )
    if probe.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        pytest.skip(f"uid {USER} cannot import this checkout: {probe.stderr.decode()[-300:]}")
    try:
        yield project
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_an_ordinary_user_runs_the_agent(user_project: UserProject) -> None:
    inp = {"prompt": "as a user", "groupFolder": "dev", "chatJid": "x@g.us", "isMain": False}
    done = user_project.cli("run", "dev", stdin=json.dumps(inp).encode())
    assert done.returncode == 0, done.stderr
    assert b"You said: 'as a user'" in done.stdout
    assert b"limits are not enforced on this host" in done.stderr


def test_an_ordinary_users_sandbox_acts_as_that_user(user_project: UserProject) -> None:
    done = user_project.cli(
        "run",
        "dev",
        "--",
        "sh",
        "-c",
        "id -un; echo x > made; cp /bin/true s; chmod 4755 s; exit 5",
    )
    assert done.returncode == 5, done.stderr
    assert done.stdout == b"node\n"
    for name in ("made", "s"):
        st = os.lstat(user_project.root / "groups/dev" / name)
        assert (st.st_uid, st.st_gid) == (USER, USER)


def test_an_ordinary_users_timeout_stops_the_sandbox_gracefully(user_project: UserProject) -> None:
    done = user_project.cli(
        "run",
        "dev",
        "--timeout",
        "1000",
        "--",
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo started; sleep 1104 & wait",
    )
    assert done.returncode == 124, done.stderr
    assert done.stdout == b"started\ngot-term\n"
    assert not [p for p in live_pids() if cmdline(p) == [b"sleep", b"1104"]]


def test_a_killed_ordinary_users_cli_leaves_nothing(user_project: UserProject) -> None:
    proc = user_project.popen("run", "dev", "--", "sh", "-c", "echo started; sleep 1105")
    watchdog(proc)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        wait_until(lambda: any(cmdline(p) == [b"sleep", b"1105"] for p in descendants(proc.pid)))
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: not set(tree) & set(live_pids()), timeout=10)
