"""Fixtures of the image-engine tests: real Docker and Podman, the Apple `container` stand-in.

Real engines are used when this process's environment points at them (``DOCKER_HOST``,
``CONTAINERS_CONF``: ``eval "$(bash scripts/engines.sh start)"``), or started here through
``scripts/engines.sh`` with ``NANOCLAW_TEST_ENGINES=start``. Otherwise their tests skip,
saying how to run them; with ``NANOCLAW_TEST_ENGINES=required`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    AGENT_IMAGE,
    BUSYBOX,
    REPO,
    AppleStandin,
    EngineProject,
    containers,
    tool,
    which,
)

MODE = os.environ.get("NANOCLAW_TEST_ENGINES", "").strip().lower()
HOW = (
    'start them with `eval "$(bash scripts/engines.sh start)"` (as root), or set '
    "NANOCLAW_TEST_ENGINES=start"
)


def _start_engines() -> str:
    """``scripts/engines.sh start``; its exports go into this process's environment."""
    if os.geteuid() != 0:
        return "scripts/engines.sh needs root"
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "engines.sh"), "start"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "scripts/engines.sh start did not finish in 15 minutes"
    if done.returncode != 0:
        return f"scripts/engines.sh start failed: {done.stderr.strip()[-500:]}"
    for line in done.stdout.splitlines():
        match = re.fullmatch(r"export ([A-Z_]+)=(.*)", line.strip())
        if match:
            os.environ[match.group(1)] = shlex.split(match.group(2))[0]
    return ""


def _usable(engine: str) -> str:
    """Why ``engine`` cannot run the tests here ("" when it can)."""
    if which(engine) is None:
        return f"{engine} is not installed"
    variable = "DOCKER_HOST" if engine == "docker" else "CONTAINERS_CONF"
    if not os.environ.get(variable):
        return f"{variable} is not set (no engine started for the tests)"
    check = ["version", "--format", "{{.Server.Version}}"] if engine == "docker" else ["info"]
    try:
        answer = tool(engine, *check, timeout=60)
    except subprocess.TimeoutExpired:
        return f"`{engine} {check[0]}` did not answer"
    if answer.returncode != 0:
        return f"`{engine} {check[0]}` failed: {answer.stderr.strip()[-300:]}"
    images = tool(engine, "image", "inspect", BUSYBOX, "python:3.12-slim", timeout=60)
    if images.returncode != 0:
        return f"{engine} lacks the test images ({BUSYBOX}, python:3.12-slim): run engines.sh start"
    return ""


@pytest.fixture(scope="session")
def real_engines() -> dict[str, str]:
    """Engine name -> why it is unusable ("" = usable)."""
    started = ""
    if MODE == "start" and not (
        os.environ.get("DOCKER_HOST") and os.environ.get("CONTAINERS_CONF")
    ):
        started = _start_engines()
    found = {}
    for engine in ("docker", "podman"):
        found[engine] = started or _usable(engine)
    return found


def need(real_engines: dict[str, str], engine: str) -> None:
    """Skip (or, with NANOCLAW_TEST_ENGINES=required, fail) when ``engine`` cannot run."""
    why = real_engines[engine]
    if why:
        message = f"real {engine} is not available: {why}; {HOW}"
        if MODE == "required":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest, real_engines: dict[str, str]) -> str:
    """Each real engine in turn."""
    need(real_engines, request.param)
    return str(request.param)


@pytest.fixture
def project(engine: str) -> Iterator[EngineProject]:
    """A project on the real ``engine``; afterwards no container of it may be left."""
    helper = EngineProject(engine, {})
    try:
        yield helper
    finally:
        left = containers(engine, helper.tag)
        for name in left:
            rm = ["rm", "-f", "-t", "0", name] if engine == "podman" else ["rm", "-f", name]
            tool(engine, *rm)
        helper.remove()
        assert not left, f"{engine} containers left by the test: {left}"


_built: dict[str, str] = {}


@pytest.fixture
def agent_image(engine: str, project: EngineProject) -> str:
    """The sample agent image, built once per session with ``prepare --base container``."""
    project.env["CONTAINER_IMAGE"] = AGENT_IMAGE
    if engine not in _built:
        done = project.cli("prepare", "--base", "container", timeout=900)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        _built[engine] = done.stdout.decode().strip()
    return AGENT_IMAGE


@pytest.fixture
def apple(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppleStandin]:
    """The Apple `container` stand-in first on PATH (release 1.2.2 unless set)."""
    standin = AppleStandin(tmp_path / "apple")
    monkeypatch.setenv("PATH", f"{standin.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CONTAINER_STANDIN_STATE", raising=False)
    monkeypatch.delenv("CONTAINER_STANDIN_VERSION", raising=False)
    try:
        yield standin
    finally:
        standin.kill_all()


@pytest.fixture
def apple_project(apple: AppleStandin) -> Iterator[EngineProject]:
    """A project whose groups run on the Apple stand-in."""
    helper = EngineProject("container", {"PATH": os.environ["PATH"]}, CONTAINER_STOP_GRACE="15")
    try:
        yield helper
    finally:
        left = [
            r["id"]
            for r in apple.records()
            if r.get("labels", {}).get("nanoclaw-runtimes.project") == helper.tag
        ]
        helper.remove()
        assert not left, f"stand-in containers left by the test: {left}"
