"""The security suite: attacks performed for real from inside a sandbox, through the CLI.

Every test drives ``nanoclaw-runtimes`` as a separate process, the way NanoClaw
does, against a throw-away project, on each sandbox that runs on this host:
bubblewrap (the container runtime) and a QEMU VM (the vibe runtime, minimal
base). A sandbox that cannot run here is skipped with the reason; in CI both
run. The agent is assumed hostile: each test writes what it could write and
checks what the host then does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nanoclaw_runtimes_core"]
RUN_TIMEOUT_S = 120

SANDBOXES = {
    "bubblewrap": {"CONTAINER_RUNTIME": "container", "CONTAINER_ENGINE": "bubblewrap"},
    "qemu": {
        "CONTAINER_RUNTIME": "vibe",
        "VIBE_ENGINE": "qemu",
        "VIBE_RAM": "512",
        "VIBE_CPUS": "1",
        "VIBE_KEEP_WARM": "0",
    },
}


def _missing(sandbox: str) -> str | None:
    if sandbox == "bubblewrap":
        return (
            None
            if shutil.which("bwrap")
            else "bubblewrap is not installed (apt-get install bubblewrap)"
        )
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if not Path("/usr/lib/qemu/virtiofsd").exists() and shutil.which("virtiofsd") is None:
        return "virtiofsd is not installed"
    return None


class Project:
    """A project root, its environment, and the CLI run against it."""

    def __init__(self, root: Path, sandbox: str, home: Path) -> None:
        self.root = root
        self.sandbox = sandbox
        self.home = home
        self.allowlist = home / "mount-allowlist.json"
        for folder in ("groups/global", "groups/dev", "groups/other", "groups/main", "data"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        keep = ("PATH", "LANG", "TERM", "TMPDIR")
        self.env: dict[str, str] = {k: os.environ[k] for k in keep if k in os.environ}
        self.env.update(
            {
                "HOME": str(home),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "NANOCLAW_MOUNT_ALLOWLIST": str(self.allowlist),
                "NANOCLAW_RUNTIMES_LOAD": "container,vibe",
                **SANDBOXES[sandbox],
            }
        )

    def cli(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = RUN_TIMEOUT_S,
        check: int | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``nanoclaw-runtimes --root ROOT ARGS``; ``check`` asserts the exit status."""
        result = subprocess.run(
            [*CLI, "--root", str(self.root), *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        if check is not None:
            assert result.returncode == check, (
                result.returncode,
                result.stdout[-2000:],
                result.stderr[-4000:],
            )
        return result

    def sh(self, group: str, script: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        """Run ``sh -c SCRIPT`` in the group's sandbox."""
        return self.cli("run", group, "--", "sh", "-c", script, **kwargs)  # type: ignore[arg-type]

    def ask(
        self,
        group: str,
        prompt: str,
        *,
        secrets: Mapping[str, str] | None = None,
        is_main: bool = False,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[bytes]:
        """Send a ContainerInput to the group's agent."""
        inp = {"prompt": prompt, "groupFolder": group, "chatJid": "sec@g.us", "isMain": is_main}
        if secrets:
            inp["secrets"] = dict(secrets)
        return self.cli("run", group, stdin=json.dumps(inp).encode(), **kwargs)  # type: ignore[arg-type]

    def config(self, group: str, container: Mapping[str, object]) -> Path:
        path = self.root / "groups" / group / "config.json"
        path.write_text(json.dumps({"containerConfig": dict(container)}))
        return path


@pytest.fixture(params=sorted(SANDBOXES))
def sandbox(request: pytest.FixtureRequest) -> str:
    missing = _missing(request.param)
    if missing:
        pytest.skip(f"{request.param}: {missing}")
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path, sandbox: str) -> Iterator[Project]:
    proj = Project(tmp_path / "project", sandbox, tmp_path / "home")
    if sandbox == "qemu":
        proj.cli("prepare", "--base", "vibe", "--minimal", check=0, timeout=600)
    yield proj
    proj.cli("warm", "--stop", timeout=60)


def processes_with(text: str, exclude: Sequence[int] = ()) -> list[str]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), *exclude):
            continue
        try:
            cmdline = (
                Path(entry.path, "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found
