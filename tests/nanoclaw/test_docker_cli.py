"""``nanoclaw-runtimes-docker`` itself: its flags, refusals, names, ``ps``/``ls``/``stop``/
``kill``/``rm`` from other processes, ``info``, ``system``, ``version`` and ``build``.

Nothing here starts a sandbox (runs are stood in for by fake_run.py, registered as the core
registers a run), except ``build``, which checks the container runtime's engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.adapter.flags import AdapterError
from nanoclaw_runtimes_core.adapter.names import run_name
from nanoclaw_runtimes_core.adapter.run_args import parse_run

from .conftest import Project, adapter_script, host_environ

HERE = Path(__file__).resolve().parent
PROG = "nanoclaw-runtimes-docker"


@pytest.fixture
def env(bin_dir: Path, runs_dir: Path, tmp_path: Path) -> dict[str, str]:
    """An environment whose groups run on the container runtime (bubblewrap)."""
    return host_environ(
        bin_dir,
        runs_dir,
        tmp_path / "home",
        tmp_path / "tmp",
        {"CONTAINER_RUNTIME": "container", "NANOCLAW_RUNTIMES_LOAD": "container"},
    )


def sh(
    command: str,
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    stdin: str = "",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """A command line through /bin/sh, as NanoClaw's execSync runs it."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: ")
    return lines[0]


# --------------------------------------------------------------------------- run's flags


def test_nanoclaw_1_2_53_argv_parses() -> None:
    args = parse_run(
        [
            "-i", "--rm", "--name", "nanoclaw-dev-1713181726123",
            "-e", "TZ=Europe/Paris",
            "-e", "HTTPS_PROXY=http://host.docker.internal:10255",
            "-v", "/tmp/onecli-proxy-ca.pem:/tmp/onecli-proxy-ca.pem:ro",
            "--add-host=host.docker.internal:host-gateway",
            "--user", "1001:1001", "-e", "HOME=/home/node",
            "-v", "/p/groups/dev:/workspace/group",
            "-v", "/p/groups/global:/workspace/global:ro",
            "--mount", "type=bind,source=/p/x,target=/workspace/extra/x,readonly",
            "nanoclaw-agent:latest",
        ],
        environ={},
    )  # fmt: skip
    assert args.interactive and args.name == "nanoclaw-dev-1713181726123"
    assert args.env == (
        ("TZ", "Europe/Paris"),
        ("HTTPS_PROXY", "http://host.docker.internal:10255"),
        ("HOME", "/home/node"),
    )
    assert args.add_hosts == ("host.docker.internal:host-gateway",)
    assert args.user == "1001:1001"
    assert [(m.host, m.container, m.readonly) for m in args.mounts] == [
        ("/tmp/onecli-proxy-ca.pem", "/tmp/onecli-proxy-ca.pem", True),
        ("/p/groups/dev", "/workspace/group", False),
        ("/p/groups/global", "/workspace/global", True),
        ("/p/x", "/workspace/extra/x", True),
    ]
    assert args.image == "nanoclaw-agent:latest" and args.command == ()


def test_flag_spellings_of_pflag() -> None:
    args = parse_run(
        [
            "-i",
            "--rm=true",
            "--name=n1",
            "-eA=1",
            "--env=B=2",
            "-e",
            "C",
            "-eD",
            "img",
            "echo",
            "-e",
        ],
        environ={"C": "from-host"},
    )
    assert args.name == "n1"
    assert args.env == (("A", "1"), ("B", "2"), ("C", "from-host"))  # D is unset: left out
    assert args.command == ("echo", "-e")  # after the image: the container's, not ours


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["--frobnicate", "img"], "unknown flag: --frobnicate"),
        (["-it", "img"], "-t is not supported: a sandbox gets no terminal"),
        (["-d", "img"], "-d is not supported: runs are attached"),
        (["--network", "none", "img"], "--network is not supported"),
        (["-v", "data:/data", "img"], "named volumes are not supported"),
        (["-v", "/data", "img"], "anonymous volumes are not supported"),
        (["-v", "/a:/b:z", "img"], "unsupported volume option 'z'"),
        (["-v", "/a:rel", "img"], "must be absolute"),
        (["--mount", "type=volume,source=v,target=/v", "img"], "only type=bind mounts"),
        (["--mount", "type=bind,source=/a,target=/b,bogus=1", "img"], "unsupported mount field"),
        (["--name"], "flag needs an argument: --name"),
        (["-i"], "an image is required"),
        (["-v", "/a:/b", "-v", "/c:/b", "img"], "duplicate mount point: /b"),
    ],
)
def test_bad_run_flags_are_named(words: list[str], expected: str) -> None:
    with pytest.raises(AdapterError) as caught:
        parse_run(words, environ={})
    assert expected in str(caught.value)
    assert caught.value.status == 125


def test_mount_readonly_false_is_read_write() -> None:
    args = parse_run(["--mount", "type=bind,src=/a,dst=/b,readonly=false", "img"], environ={})
    assert [(m.host, m.container, m.readonly) for m in args.mounts] == [("/a", "/b", False)]


def test_unknown_flag_exits_125_with_one_line(env: dict[str, str]) -> None:
    result = sh("docker run -i --rm --frobnicate nanoclaw-agent:latest", env)
    assert result.returncode == 125
    assert "unknown flag: --frobnicate" in one_error_line(result)
    assert result.stdout == ""


def test_unknown_command_exits_125(env: dict[str, str]) -> None:
    result = sh("docker exec nanoclaw-x ls", env)
    assert result.returncode == 125
    assert "unknown command 'exec'" in one_error_line(result)


# --------------------------------------------------------------------------- names


def test_run_names() -> None:
    assert run_name("nanoclaw-dev-1713181726123") == "nanoclaw-dev-1713181726123"
    long = "nanoclaw-" + "a" * 64 + "-1713181726123"
    short = run_name(long)
    assert len(short) <= 63 and short.startswith("nanoclaw-aaaa") and short == run_name(long)
    assert run_name(short) == short  # what ps shows, stop accepts
    assert run_name("nanoclaw-" + "a" * 64 + "-1713181726124") != short
    with pytest.raises(AdapterError, match="Invalid container name"):
        run_name("-bad")


# --------------------------------------------------------------------------- run's refusals


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path / "nanoclaw")
    p.group("dev")
    p.group("whatsapp_main")
    return p


def _input(folder: str = "dev", is_main: bool = False) -> str:
    return json.dumps({"prompt": "hi", "groupFolder": folder, "chatJid": "x@g", "isMain": is_main})


@pytest.mark.parametrize(
    ("mounts", "stdin", "expected"),
    [
        ("", _input(), "no -v HOST:/workspace/group mount"),
        ("-v {root}/dev:/workspace/group", _input(), "must be <project>/groups/<folder>"),
        (
            "-v {root}/groups/dev:/workspace/group",
            "not json",
            "stdin: line 1, column 1: invalid JSON",
        ),
        ("-v {root}/groups/dev:/workspace/group", '{"prompt": 1}', "stdin: prompt: expected str"),
        (
            "-v {root}/groups/dev:/workspace/group",
            _input("other"),
            "the input's groupFolder is 'other' but the /workspace/group mount is the group 'dev'",
        ),
        (
            "-v {root}/groups/whatsapp_main:/workspace/group",
            _input("whatsapp_main", is_main=True),
            "the input says isMain but no /workspace/project mount was given",
        ),
        (
            "-v {root}:/workspace/project:ro -v {root}/groups/dev:/workspace/group",
            _input(),
            "a /workspace/project mount was given but the input's isMain is false",
        ),
        ("-v {root}/groups/bad.name:/workspace/group", _input("bad.name"), "invalid group name"),
        ("--user 0:0 -v {root}/groups/dev:/workspace/group", _input(), "is root"),
    ],
)
def test_run_refusals(
    mounts: str, stdin: str, expected: str, env: dict[str, str], project: Project
) -> None:
    command = f"docker run -i --rm --name nanoclaw-dev-1 {mounts.format(root=project.root)} img"
    result = sh(command, env, stdin=stdin)
    assert result.returncode == 125, result.stderr
    assert expected in one_error_line(result)
    assert result.stdout == ""
    assert not (project.root / "groups" / "dev" / "logs").exists()  # nothing was run


def test_the_group_config_chooses_the_runtime(env: dict[str, str], project: Project) -> None:
    """The group's ``containerConfig.runtime`` wins over CONTAINER_RUNTIME, as everywhere else:
    a group naming a runtime that is not installed is refused, saying which and how to fix it."""
    group = project.group("picky")
    (group / "config.json").write_text('{"containerConfig": {"runtime": "tart"}}')
    command = f"docker run -i --rm --name nanoclaw-picky-1 -v {group}:/workspace/group img"
    result = sh(command, env, stdin=_input("picky"))
    assert result.returncode == 125
    line = one_error_line(result)
    assert "groups/picky/config.json: containerConfig.runtime: unknown runtime 'tart'" in line
    assert "pip install nanoclaw-runtime-tart" in line


def test_run_without_i_refused(env: dict[str, str], project: Project) -> None:
    result = sh(f"docker run --rm -v {project.root}/groups/dev:/workspace/group img", env)
    assert result.returncode == 125
    assert "-i is required" in one_error_line(result)


# --------------------------------------------------------------------------- ps, ls, stop, kill, rm


class FakeRuns:
    """Runs registered by fake_run.py processes in the test's runs folder."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, mode: str = "polite") -> Path:
        report = self.tmp / f"{name[:40]}.json"
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_run.py"), name, str(self.tmp), str(report), mode],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return report

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def fake(env: dict[str, str], tmp_path: Path) -> Iterator[FakeRuns]:
    runs = FakeRuns(env, tmp_path)
    yield runs
    runs.close()


def test_ps_lists_running_names_as_nanoclaw_reads_them(env: dict[str, str], fake: FakeRuns) -> None:
    fake.start("nanoclaw-dev-1713181726123")
    fake.start("nanoclaw-team-1713181726999")
    fake.start("nc-other-abc")
    result = sh("docker ps --filter name=nanoclaw- --format '{{.Names}}'", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nanoclaw-dev-1713181726123\nnanoclaw-team-1713181726999\n"
    both = sh(
        "docker ps -a --filter name=^nanoclaw-dev --filter name=other --format '{{.Names}}'", env
    )
    assert both.stdout == "nanoclaw-dev-1713181726123\nnc-other-abc\n"
    rows = [
        json.loads(line) for line in sh("docker ps --format '{{json .}}'", env).stdout.splitlines()
    ]
    assert [r["Names"] for r in rows] == [
        "nanoclaw-dev-1713181726123",
        "nanoclaw-team-1713181726999",
        "nc-other-abc",
    ]
    assert all(r["State"] == "running" and len(r["ID"]) == 12 for r in rows)
    ids = sh("docker ps -q", env).stdout.split()
    assert ids == [r["ID"] for r in rows]
    table = sh("docker ps", env).stdout.splitlines()
    assert table[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    assert table[1].endswith("nanoclaw-dev-1713181726123")


def test_ps_refuses_bad_filters_and_templates(env: dict[str, str]) -> None:
    assert sh("docker ps --filter bogus=1", env).returncode == 1
    result = sh("docker ps --format '{{.Nope}}'", env)
    assert result.returncode == 125 and "no field 'Nope'" in result.stderr


def test_apple_ls_json_as_nanoclaw_reads_it(env: dict[str, str], fake: FakeRuns) -> None:
    assert json.loads(sh("container ls --format json", env).stdout) == []
    fake.start("nanoclaw-dev-1713181726123")
    entries = json.loads(sh("container ls --format json", env).stdout)
    assert [(e["status"], e["configuration"]["id"]) for e in entries] == [
        ("running", "nanoclaw-dev-1713181726123")
    ]
    assert sh("container ls -a -q", env).stdout == "nanoclaw-dev-1713181726123\n"


@pytest.mark.parametrize(
    ("command", "grace"),
    [
        ("docker stop -t 1 {name}", 1.0),
        ("docker stop {name}", 10.0),
        ("docker stop --time=3 {name}", 3.0),
        ("container stop {name}", 5.0),
        ("docker kill {name}", 0.0),
        ("docker rm -f {name}", 0.0),
    ],
)
def test_stop_asks_the_run_for_its_grace(
    command: str, grace: float, env: dict[str, str], fake: FakeRuns
) -> None:
    name = "nanoclaw-dev-1713181726123"
    report = fake.start(name)
    t0 = time.monotonic()
    result = sh(command.format(name=name), env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{name}\n"
    assert time.monotonic() - t0 < 5  # the run ended at once: stop did not wait out the grace
    assert json.loads(report.read_text()) == {"grace": grace}
    assert sh("docker ps -q", env).stdout == ""


def test_stop_finds_a_long_name(env: dict[str, str], fake: FakeRuns) -> None:
    long = "nanoclaw-" + "very-long-group-name-" * 3 + "x-1713181726123"
    report = fake.start(run_name(long))
    result = sh(f"docker stop -t 1 {long}", env)
    assert result.returncode == 0, result.stderr
    assert report.exists()


def test_stop_kills_a_run_that_does_not_end(env: dict[str, str], fake: FakeRuns) -> None:
    name = "nanoclaw-dev-1713181726123"
    fake.start(name, mode="stubborn")
    t0 = time.monotonic()
    result = sh(f"docker stop -t 0 {name}", env)
    assert result.returncode == 0
    assert 3 < time.monotonic() - t0 < 10
    assert "did not end within 4 s; killing it" in result.stderr
    assert fake.procs[0].wait(timeout=5) == -9
    assert sh("docker ps -q", env).stdout == ""


def test_stop_kill_rm_of_unknown_names(env: dict[str, str]) -> None:
    for command in (
        "docker stop -t 1 nanoclaw-x-1",
        "docker kill nanoclaw-x-1",
        "docker rm nanoclaw-x-1",
    ):
        result = sh(command, env)
        assert result.returncode == 1
        assert result.stderr == "Error response from daemon: No such container: nanoclaw-x-1\n"
    apple = sh("container stop nanoclaw-x-1", env)
    assert apple.returncode == 1 and "container with ID nanoclaw-x-1 not found" in apple.stderr
    assert sh("docker stop", env).returncode == 125


def test_rm_of_a_running_run_is_refused(env: dict[str, str], fake: FakeRuns) -> None:
    name = "nanoclaw-dev-1713181726123"
    report = fake.start(name)
    result = sh(f"docker rm {name}", env)
    assert result.returncode == 1 and "container is running" in result.stderr
    assert not report.exists() and fake.procs[0].poll() is None


# --------------------------------------------------------------------------- info, system, version


def test_info_is_quick_and_names_the_default_runtime(env: dict[str, str], project: Project) -> None:
    t0 = time.monotonic()
    result = sh("docker info", env, cwd=project.root, timeout=10)
    assert time.monotonic() - t0 < 10
    assert result.returncode == 0, result.stderr
    assert " Default Runtime: container" in result.stdout.splitlines()
    assert any(
        line.startswith(" Runtime container: available") for line in result.stdout.splitlines()
    )
    data = json.loads(sh("docker info --format '{{json .}}'", env).stdout)
    assert data["DefaultRuntime"] == "container"


def test_info_fails_when_the_default_runtime_cannot_run(env: dict[str, str]) -> None:
    result = sh("docker info", {**env, "CONTAINER_RUNTIME": "nope"})
    assert result.returncode == 1
    assert "ERROR: CONTAINER_RUNTIME=nope: no such runtime is installed" in result.stderr


def test_info_reads_the_project_env_file(env: dict[str, str], project: Project) -> None:
    (project.root / ".env").write_text("CONTAINER_RUNTIME=nope\n")
    without = {k: v for k, v in env.items() if k != "CONTAINER_RUNTIME"}  # the variable wins
    result = sh("docker info", without, cwd=project.root)
    assert result.returncode == 1 and "CONTAINER_RUNTIME=nope" in result.stderr


def test_apple_system_status_and_start(env: dict[str, str]) -> None:
    status = sh("container system status", env)
    assert status.returncode == 0 and status.stdout == "apiserver is running\n"
    assert sh("container system start", env).returncode == 0
    down = sh("container system status", {**env, "CONTAINER_RUNTIME": "nope"})
    assert down.returncode == 1 and down.stdout == "apiserver is not running\n"
    assert sh("container system start", {**env, "CONTAINER_RUNTIME": "nope"}).returncode == 1


def test_versions(env: dict[str, str]) -> None:
    from nanoclaw_runtimes_core.adapter.system import version_number

    v = version_number()
    assert sh("docker --version", env).stdout == f"Docker version {v}, build {PROG}\n"
    assert sh("container --version", env).stdout == (
        f"container CLI version {v} (build: {PROG}, commit: unspecified)\n"
    )
    assert f" Version:           {v}" in sh("docker version", env).stdout
    script = adapter_script()
    assert sh(f"{script} --version", {**env, "NANOCLAW_DOCKER_DIALECT": "apple"}).stdout.startswith(
        "container CLI version"
    )


def test_build_prepares_the_default_runtime(env: dict[str, str], project: Project) -> None:
    """NanoClaw setup's ``docker build -t nanoclaw-agent:latest .`` in ``container/``."""
    result = sh(
        "docker build -t nanoclaw-agent:latest .", env, cwd=project.root / "container", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "the Dockerfile is not used; preparing runtime 'container'" in result.stderr
    assert "bubblewrap" in result.stdout


def test_management_prefix(env: dict[str, str], fake: FakeRuns) -> None:
    fake.start("nanoclaw-dev-1")
    assert sh("docker container ls --format '{{.Names}}'", env).stdout == "nanoclaw-dev-1\n"
    assert sh("docker container stop -t 1 nanoclaw-dev-1", env).returncode == 0


def test_the_engine_never_finds_the_adapter(env: dict[str, str]) -> None:
    """With the container runtime on Docker, the engine is the real docker, not this tool
    (its link comes first on PATH): no recursion, an answer within NanoClaw's 10 s."""
    t0 = time.monotonic()
    result = sh("docker info", {**env, "CONTAINER_ENGINE": "docker"}, timeout=20)
    assert time.monotonic() - t0 < 10
    assert "called by itself" not in result.stdout + result.stderr
    assert "unknown flag" not in result.stdout + result.stderr
    nested = sh("docker info", {**env, "NANOCLAW_RUNTIMES_DOCKER_ACTIVE": "1"})
    assert nested.returncode == 125 and "called by itself" in one_error_line(nested)
