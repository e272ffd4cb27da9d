"""Helpers of the image-engine tests: real Docker and Podman, the Apple `container` stand-in, a
project driven through the ``nanoclaw-runtimes`` command, and the engines' own view of it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nanoclaw_runtime_container.engines.image_engine import LABEL_PROJECT

from nanoclaw_runtimes_core.plan import project_tag
from nanoclaw_runtimes_core.testing import clean_environ
from nanoclaw_runtimes_core.testing.project import NanoclawProject

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"
BUSYBOX = "nanoclaw-test/busybox:latest"
AGENT_IMAGE = "nanoclaw-runtimes-agent:latest"
SANDBOX_UID = 1_000_000_000
"""The sandbox user's host uid when the tests run as root (the core's default)."""
ENGINE_VARS = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "ENGINES_DIR",
)
CLI_TIMEOUT_S = 120.0


def sandbox_uid() -> int:
    """The host uid the sandbox acts as for this test process."""
    return SANDBOX_UID if os.geteuid() == 0 else os.getuid()


def tool(name: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60):
    """Run the real engine's command line (its variables from this process)."""
    return subprocess.run(
        [name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        check=False,
    )


class EngineProject:
    """A throw-away project whose groups run on one image engine, driven through the CLI."""

    __test__ = False

    def __init__(self, engine: str, environ: Mapping[str, str], **settings: str) -> None:
        self.engine = engine
        self.helper = NanoclawProject()
        self.root = self.helper.root
        for folder in ("dev", "main", "other"):
            self.helper.group(folder)
        self.env = clean_environ(allowlist=self.helper.allowlist_path)
        self.env.update(environ)
        self.env.update(
            CONTAINER_RUNTIME="container",
            CONTAINER_ENGINE=engine,
            CONTAINER_IMAGE=BUSYBOX,
            CONTAINER_STOP_GRACE="15",
            NANOCLAW_RUNTIMES_LOAD="container",
        )
        self.env.update(settings)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    @property
    def tag(self) -> str:
        return project_tag(self.root)

    def config(self, folder: str, **container: Any) -> None:
        """Write the group's config (before any run, so it is trusted as it is)."""
        self.helper.group(folder, {"runtime": "container", **container})

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "nanoclaw_runtimes_core", "--root", str(self.root), *args]

    def cli(
        self,
        *args: str,
        stdin: bytes | None = None,
        timeout: float = CLI_TIMEOUT_S,
        **env: str,
    ) -> subprocess.CompletedProcess[bytes]:
        """``nanoclaw-runtimes ARGS`` to completion."""
        return subprocess.run(
            self.argv(*args),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            env={**self.env, **env},
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``nanoclaw-runtimes ARGS`` in the background (its own process group)."""
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **env},
            start_new_session=True,
        )

    def run(self, folder: str, *command: str, timeout_ms: int | None = None, **env: str):
        """``run GROUP -- COMMAND``."""
        extra = ["--timeout", str(timeout_ms)] if timeout_ms else []
        return self.cli("run", *extra, folder, "--", *command, **env)

    def ask(self, folder: str, prompt: str = "hello", **env: str):
        """Agent mode: one ContainerInput on stdin."""
        data = {
            "prompt": prompt,
            "groupFolder": folder,
            "chatJid": "engines@g.us",
            "isMain": folder == "main",
        }
        return self.cli("run", folder, stdin=json.dumps(data).encode(), **env)

    def remove(self) -> None:
        self.helper.remove()


def containers(engine: str, tag: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the containers labelled with project ``tag`` (any state)."""
    if engine == "container":
        found = tool("container", "ls", "-a", "--format", "json", env=env)
        items = json.loads(found.stdout or "[]")
        return [
            str(i.get("id") or i["configuration"]["id"])
            for i in items
            if i["configuration"].get("labels", {}).get(LABEL_PROJECT) == tag
        ]
    found = tool(
        engine, "ps", "-a", "--filter", f"label={LABEL_PROJECT}={tag}", "--format", "{{.Names}}"
    )
    assert found.returncode == 0, found.stderr
    return found.stdout.split()


def wait_for(check, timeout_s: float = 30.0, interval: float = 0.1):
    """Poll ``check`` until it returns something true (or the time is up); its last value."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a background CLI (the process only, as a user's kill would)."""
    proc.send_signal(sig)


def processes_named(engine: str, marker: str) -> list[int]:
    """Pids of live ``engine`` client processes whose command line holds ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            words = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = bool(words) and os.path.basename(words[0].decode(errors="replace")) == engine
        if named and any(marker.encode() in w for w in words):
            found.append(int(entry.name))
    return found


class AppleStandin:
    """The `container` stand-in first on PATH: a wrapper that runs it with a fresh state folder
    and the release to behave as (engines give their tools a minimal environment, so these
    cannot travel in this process's variables; a new release is a new executable, as when
    the real tool is upgraded), and an image store holding ``python:3.12-slim`` (the host's
    python3) and the busybox test image."""

    def __init__(self, base: Path, version: str = "1.2.2") -> None:
        self.bin = base / "bin"
        self.state = base / "state"
        self.bin.mkdir(parents=True)
        (self.state / "images").mkdir(parents=True)
        self.set_version(version)
        python = {"env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}}
        (self.state / "images" / "python_3.12-slim.json").write_text(
            json.dumps({**python, "reference": "python:3.12-slim", "cmd": ["python3"]})
        )
        busybox = {"reference": BUSYBOX, "env": python["env"], "cmd": ["/bin/sh"]}
        (self.state / "images" / "nanoclaw-test_busybox_latest.json").write_text(
            json.dumps(busybox)
        )

    def set_version(self, version: str) -> None:
        """Replace the wrapper: the stand-in now behaves as release ``version``."""
        wrapper = self.bin / "container"
        tmp = self.bin / ".container.new"
        tmp.write_text(
            "#!/bin/sh\n"
            f"CONTAINER_STANDIN_STATE={shlex.quote(str(self.state))} "
            f"CONTAINER_STANDIN_VERSION={shlex.quote(version)} "
            f'exec /usr/bin/env python3 {shlex.quote(str(STANDINS / "container"))} "$@"\n'
        )
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)

    def set_down(self, down: bool = True) -> None:
        flag = self.state / "down"
        if down:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def runs(self) -> list[list[str]]:
        return [c for c in self.calls() if c[1:2] == ["run"]]

    def run(
        self, *args: str, stdin: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """The stand-in itself, as a user would call it."""
        return subprocess.run(
            [str(self.bin / "container"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_background(self, *args: str) -> subprocess.Popen[bytes]:
        """The stand-in in the background, its output discarded."""
        return subprocess.Popen(
            [str(self.bin / "container"), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def records(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text()) for p in sorted((self.state / "containers").glob("*.json"))
        ]

    def kill_all(self) -> None:
        for record in self.records():
            if record.get("pid"):
                with contextlib.suppress(OSError):
                    os.killpg(record["pid"], signal.SIGKILL)


def which(name: str) -> str | None:
    return shutil.which(name)


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def our_errors(data: bytes) -> list[str]:
    """The CLI's own error lines (not its warnings, which other runs on the host may cause:
    a swept folder of someone's killed run)."""
    return [
        ln
        for ln in text(data).splitlines()
        if ln.startswith("nanoclaw-runtimes:") and not ln.startswith("nanoclaw-runtimes: warning:")
    ]


def find_lines(data: bytes, needle: str) -> list[str]:
    return [ln for ln in text(data).splitlines() if needle in ln]


def env_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def all_cmdlines() -> Sequence[bytes]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append(Path(entry.path, "cmdline").read_bytes())
    return found
