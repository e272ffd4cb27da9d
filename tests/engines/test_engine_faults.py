"""Faults and the pieces behind them: an engine that never answers, a missing tool, probe
caching, Podman's two `ps` formats, values an env file cannot carry."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanoclaw_runtime_container.engines import docker, image_engine, make_engine, probe_cache

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.testing import clean_environ
from nanoclaw_runtimes_core.testing.processes import descendants
from nanoclaw_runtimes_core.testing.project import NanoclawProject, RecordingSink

from .conftest import need
from .helpers import BUSYBOX

# --------------------------------------------------------------------------- ps output

PODMAN_43 = """[
  {"Names": ["nc-dev-abc123-1"], "State": "running",
   "Labels": {"nanoclaw-runtimes.project": "abc123", "nanoclaw-runtimes.group": "dev"}},
  {"Names": ["other"], "State": "exited", "Labels": null}
]"""
DOCKER = (
    '{"Names":"nc-dev-abc123-1","State":"running",'
    '"Labels":"nanoclaw-runtimes.group=dev,nanoclaw-runtimes.project=abc123"}\n'
    '{"Names":"other","State":"exited","Labels":""}\n'
)


def test_ps_json_array_and_lines_give_the_same_rows() -> None:
    for text in (PODMAN_43, DOCKER):
        rows = docker.parse_ps(text)
        assert [docker.row_name(r) for r in rows] == ["nc-dev-abc123-1", "other"]
        assert docker.row_labels(rows[0]) == {
            "nanoclaw-runtimes.project": "abc123",
            "nanoclaw-runtimes.group": "dev",
        }
        assert docker.row_labels(rows[1]) == {}
    assert docker.parse_ps("[]") == [] and docker.parse_ps("") == []
    with pytest.raises(ValueError):
        docker.parse_ps("Error: template")


def test_podman_init_path_comes_from_containers_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\n#init_path = "/nope"\ninit_path = "/opt/bin/catatonit"\n')
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    assert docker.podman_init_path() == "/opt/bin/catatonit"
    conf.write_text("[engine]\n")
    assert docker.podman_init_path() == docker.PODMAN_INIT


def test_mount_specs_quote_what_csv_needs() -> None:
    assert docker.bind_spec("/a,b", "/x", True) == 'type=bind,"source=/a,b",target=/x,readonly'
    assert docker.bind_spec('/q"', "/x", False) == 'type=bind,"source=/q""",target=/x'


# --------------------------------------------------------------------------- a silent engine


@pytest.fixture
def silent_daemon(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung daemon."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_status_of_a_hung_daemon_is_bounded(
    silent_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if docker.tool_exe("docker") is None:
        pytest.skip("no docker client installed")
    monkeypatch.setenv("DOCKER_HOST", silent_daemon)
    monkeypatch.setattr(docker, "STATUS_TIMEOUT_S", 1.0)
    start = time.monotonic()
    status = make_engine("docker").status()
    assert time.monotonic() - start < 5
    assert not status.available
    assert "did not answer within 1 s" in status.detail and status.fix


def test_a_run_on_a_hung_daemon_ends_and_leaves_nothing(
    silent_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every engine call is bounded: the run times out, `stop`, `kill` and `rm` give up, the
    client is killed, and the container stays recorded for the next run."""
    if docker.tool_exe("docker") is None:
        pytest.skip("no docker client installed")
    monkeypatch.setenv("DOCKER_HOST", silent_daemon)
    monkeypatch.setattr(image_engine, "MANAGE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(image_engine, "STOP_MARGIN_S", 1.0)
    project = NanoclawProject()
    try:
        project.group("dev")
        environ = clean_environ(allowlist=project.allowlist_path)
        environ.update(
            CONTAINER_RUNTIME="container",
            CONTAINER_ENGINE="docker",
            CONTAINER_IMAGE=BUSYBOX,
            CONTAINER_STOP_GRACE="0",
        )
        before = set(descendants())
        start = time.monotonic()
        result = nc.Runtimes(project.root, environ=environ).execute(
            "dev", command=["true"], timeout_ms=1000, sink=RecordingSink()
        )
        took = time.monotonic() - start
        assert result.timed_out and result.status == "error"
        assert took < 15, f"took {took:.1f} s"
        assert [p for p in descendants() if p not in before] == []
        records = list((project.root / "data/runtimes/container/dev").glob("leftover-*.json"))
        assert len(records) == 1
        assert json.loads(records[0].read_text())["env"]["DOCKER_HOST"] == silent_daemon
    finally:
        project.remove()


def test_a_missing_tool_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("docker", "podman"):
        status = make_engine(name).status()
        assert not status.available and "not on PATH" in status.detail
        assert "install" in status.fix.lower()
    status = make_engine("container").status()
    assert not status.available and status.fix


# --------------------------------------------------------------------------- probes


def test_status_probes_are_cached_per_configuration(
    real_engines: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A second status() reads the cache (no `info` call); another DOCKER_HOST probes again."""
    need(real_engines, "docker")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = make_engine("docker").status()
    assert first.available and first.version
    cache = probe_cache.cache_dir() / "docker-status.json"
    stored = json.loads(cache.read_text())
    stored["value"]["version"] = "from-the-cache"
    cache.write_text(json.dumps(stored))
    assert make_engine("docker").status().version == "from-the-cache"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")
    other = make_engine("docker").status()
    assert not other.available and "elsewhere.sock" in other.detail
    assert make_engine("docker").status().detail == other.detail  # a failure is not cached ...
    assert json.loads(cache.read_text())["value"]["version"] == "from-the-cache"  # ... nor stored


# --------------------------------------------------------------------------- env files


def _request(env: dict[str, str]) -> nc.ExecuteRequest:
    project = nc.Project(root=Path("/nonexistent"))
    group = nc.Group(folder="dev", path=project.root / "groups" / "dev", is_main=False)
    return nc.ExecuteRequest(
        project=project, group=group, settings=None, mounts=(), timeout_ms=1, env=env
    )


def test_the_env_file_keeps_values_verbatim_and_the_images_path() -> None:
    text = image_engine.env_file_text(_request({"A": " spaced =x ", "TZ": "UTC"})).decode()
    assert "A= spaced =x \n" in text and "TZ=UTC\n" in text
    assert "HOME=/home/node\n" in text
    assert "PATH=" not in text


@pytest.mark.parametrize("value", ["a\nB=1", "a\rb", "a\0b"])
def test_values_an_env_file_cannot_carry_are_refused(value: str) -> None:
    with pytest.raises(nc.UserError) as err:
        image_engine.env_file_text(_request({"SECRET_THING": value}))
    assert "SECRET_THING" in str(err.value) and value not in str(err.value)


def test_the_env_pipe_carries_more_than_a_pipe_holds() -> None:
    data = b"K=" + b"v" * (1 << 20) + b"\n"
    with image_engine.env_pipe(data) as fd:
        got = bytearray()
        while chunk := os.read(fd, 1 << 16):
            got += chunk
    assert bytes(got) == data
