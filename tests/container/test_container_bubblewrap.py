"""The bubblewrap engine, for real: isolation, clean environment, timeouts, streaming."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest
from nanoclaw_runtime_container import plugin
from nanoclaw_runtime_container.engines import bubblewrap, bwrap_host
from nanoclaw_runtime_container.settings import ContainerSettings

from nanoclaw_runtimes_core.models import PrepareRequest

from .container_helpers import ProjectHelper, RecordingSink, processes_with, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or not bubblewrap.probe(shutil.which("bwrap") or "").works,
    reason="bubblewrap (bwrap) is not installed or cannot create a sandbox here",
)

BWRAP = ContainerSettings(engine="bubblewrap", stop_grace=1)
MARK = "---NANOCLAW_OUTPUT_"  # halves, so the literal marker is never in a command line


def run(project: ProjectHelper, script: str, folder: str = "dev", **kwargs):
    """Run ``sh -c script`` in the group's sandbox; return (result, sink)."""
    kwargs.setdefault("settings", BWRAP)
    sink = kwargs.pop("sink", None) or RecordingSink()
    request = project.request(folder, command=("sh", "-c", script), sink=sink, **kwargs)
    return plugin.execute(request=request), sink


def writable_host_mounts(project: ProjectHelper, folder: str = "dev") -> set[str]:
    """Mount points inside the sandbox that are read-write AND backed by a host file system."""
    result, sink = run(project, "cat /proc/self/mountinfo", folder)
    assert result.exit_code == 0, sink.stderr
    found = set()
    for line in sink.text.splitlines():
        left, _, right = line.partition(" - ")
        fields, fstype = left.split(), right.split()[0]
        point, options = fields[4], fields[5].split(",")
        if "rw" not in options or fstype in ("tmpfs", "proc", "devpts", "mqueue"):
            continue
        if point == "/dev" or point.startswith("/dev/"):
            continue  # device nodes (/dev/null, ...) bound by --dev
        found.add(point)
    return found


def test_only_the_contract_mounts_are_writable(project: ProjectHelper) -> None:
    assert writable_host_mounts(project, "dev") == {
        "/workspace/group",
        "/workspace/ipc",
        "/home/node/.claude",
    }


def test_workspace_is_writable_and_the_host_is_not(project: ProjectHelper) -> None:
    python_prefix = os.path.realpath(sys.base_prefix)
    script = (
        "echo hi > /workspace/group/made-inside && echo wrote-workspace; "
        f"for p in /usr /etc / /workspace/global {python_prefix}; do "
        "  if touch $p/probe-$$ 2>/dev/null; then echo WRITABLE $p; else echo readonly $p; fi; "
        "done"
    )
    result, sink = run(project, script)
    assert result.exit_code == 0, sink.stderr
    assert "wrote-workspace" in sink.text
    assert (project.root / "groups" / "dev" / "made-inside").read_text() == "hi\n"
    assert "WRITABLE" not in sink.text, sink.text
    assert sink.text.count("readonly") == 5


def test_main_sees_the_project_read_only(project: ProjectHelper) -> None:
    (project.root / "groups" / "dev").mkdir(parents=True)
    result, sink = run(project, "ls /workspace/project/groups; touch /workspace/project/x", "main")
    assert "dev" in sink.text.split()
    assert result.exit_code != 0 and b"Read-only file system" in bytes(sink.stderr)
    assert "/workspace/global" in writable_host_mounts(project, "main")  # main writes global


def test_another_groups_folder_is_not_visible(project: ProjectHelper) -> None:
    secret = f"other-group-secret-{secrets.token_hex(4)}"
    other = project.group("other").path
    (other / "notes.txt").write_text(secret)
    # Search every file the sandbox sees, except the big read-only trees of the userland
    # and of the host's Python (they are checked to be read-only elsewhere).
    skip = {"proc", "sys", "dev", "usr"} | {
        p.name for p in bwrap_host.python_paths(include_core=True)
    }
    excludes = " ".join(f"--exclude-dir='{name}'" for name in sorted(skip))
    script = (
        f"test -e {other} && echo SEES-OTHER-PATH; "
        f"test -e {project.root} && echo SEES-PROJECT-ROOT; "
        f"grep -rs {excludes} -l '{secret}' / ; echo done"
    )
    result, sink = run(project, script)
    assert result.exit_code == 0, sink.stderr
    assert sink.text.strip().splitlines() == ["done"], sink.text


def test_network_is_off_by_default(project: ProjectHelper) -> None:
    result, sink = run(project, "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert result.exit_code == 0
    assert [line.strip() for line in sink.text.splitlines()] == ["lo"]


def test_a_group_can_turn_network_on(project: ProjectHelper) -> None:
    host_interfaces = {
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    }
    if host_interfaces <= {"lo"}:
        pytest.skip("this host has no interface but lo")
    settings = attrs.evolve(BWRAP, network=True)
    result, sink = run(project, "tail -n +3 /proc/net/dev | cut -d: -f1", settings=settings)
    assert result.exit_code == 0
    assert {line.strip() for line in sink.text.splitlines()} == host_interfaces


def test_environment_is_clean(project: ProjectHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    leaked = f"sk-live-{secrets.token_hex(8)}"
    passed = f"passed-{secrets.token_hex(4)}"
    monkeypatch.setenv("NANOCLAW_TEST_API_KEY", leaked)
    monkeypatch.setenv("NANOCLAW_TEST_PASS_ME", passed)
    settings = attrs.evolve(BWRAP, env=("NANOCLAW_TEST_PASS_ME", "FIXED=value one"))
    result, sink = run(project, "env", settings=settings)
    assert result.exit_code == 0
    env = dict(line.split("=", 1) for line in sink.text.splitlines() if "=" in line)
    assert leaked not in sink.text
    assert "NANOCLAW_TEST_API_KEY" not in env
    assert env["HOME"] == "/home/node"
    assert env["NANOCLAW_TEST_PASS_ME"] == passed
    assert env["FIXED"] == "value one"
    assert set(env) <= {
        "HOME",
        "PATH",
        "LANG",
        "TZ",
        "USER",
        "LOGNAME",
        "PWD",
        "SHLVL",
        "_",
        "NANOCLAW_TEST_PASS_ME",
        "FIXED",
    }
    # Values travel in bwrap's environment, never on its command line (visible in ps).
    request = project.request(command=("true",), settings=settings)
    argv = bubblewrap.BubblewrapEngine(settings, project.project).argv(request, "x")
    assert passed not in " ".join(argv) and "value one" not in " ".join(argv)


def test_timeout_kills_the_whole_sandbox(project: ProjectHelper) -> None:
    # A unique sleep length marks every process of this sandbox in `ps`; the shell ignores
    # SIGTERM, so the graceful stop is not enough and the kill must do it.
    marker = f"{secrets.randbelow(8000) + 1000}.{secrets.randbelow(10**6)}"
    script = (
        f"trap '' TERM; sleep {marker} & sleep {marker} & "
        f"(sleep {marker}; true) & echo started; wait"
    )
    started = time.monotonic()
    result, sink = run(project, script, timeout_ms=1500)
    assert result.timed_out and result.status == "error"
    assert result.error_message() == "Container timed out after 1500 ms"
    assert "started" in sink.text
    assert time.monotonic() - started < 30
    assert wait_until(lambda: not processes_with(marker), 10), processes_with(marker)


def test_timeout_stops_gracefully_first(project: ProjectHelper) -> None:
    script = (
        "trap 'echo term > /workspace/group/got-term; exit 0' TERM; "
        "echo started; while :; do sleep 0.1; done"
    )
    result, _sink = run(project, script, timeout_ms=1000)
    assert result.timed_out
    assert (project.root / "groups" / "dev" / "got-term").read_text() == "term\n"


def test_output_blocks_stream_before_the_process_ends(project: ProjectHelper) -> None:
    # The command waits until the sink has seen its block (a file the sink writes into the
    # workspace), so it can only finish well if the block arrived while it still ran.
    go = project.group("dev").path / "go"

    def release(_output: object) -> None:
        go.write_text("go")

    script = (
        f'printf \'%s\\n\' \'{MARK}START---\' \'{{"status":"success","result":"first"}}\' '
        f"'{MARK}END---'; "
        "i=0; while [ ! -e /workspace/group/go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); "
        "done; [ -e /workspace/group/go ] && echo released"
    )
    result, sink = run(project, script, sink=RecordingSink(on_block=release))
    assert [o.result for o in sink.outputs] == ["first"]
    assert result.exit_code == 0 and "released" in sink.text, sink.text


def test_agent_mode_runs_the_example_agent(project: ProjectHelper) -> None:
    secret_value = f"secret-{secrets.token_hex(8)}"
    sink = RecordingSink()
    request = project.request(
        "dev",
        settings=BWRAP,
        prompt="what is 2+2?",
        sink=sink,
        secrets={"ANTHROPIC_API_KEY": secret_value},
    )
    result = plugin.execute(request=request)
    assert result.status == "success", (result, bytes(sink.stderr))
    assert len(sink.outputs) == 2
    assert "what is 2+2?" in (sink.outputs[0].result or "")
    assert sink.outputs[1].result is None and sink.outputs[1].new_session_id
    assert secret_value not in repr(sink.outputs) + sink.text + bytes(sink.stderr).decode()
    assert (project.root / "groups" / "dev" / ".example-agent-history").exists()


def test_ctrl_c_takes_the_sandbox_down(project: ProjectHelper) -> None:
    marker = f"{secrets.randbelow(8000) + 1000}.{secrets.randbelow(10**6)}"
    sink = RecordingSink()
    request = project.request(
        command=("sh", "-c", f"sleep {marker} & echo started; wait"), settings=BWRAP, sink=sink
    )
    timer = threading.Timer(
        0.1,
        lambda: (
            wait_until(lambda: b"started" in sink.stdout, 20)
            and os.kill(os.getpid(), signal.SIGINT)
        ),
    )
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        plugin.execute(request=request)
    timer.join()
    assert wait_until(lambda: not processes_with(marker), 10), processes_with(marker)


def test_a_missing_command_is_reported(project: ProjectHelper) -> None:
    request = project.request(command=("no-such-command-xyz",), settings=BWRAP)
    result = plugin.execute(request=request)
    assert result.status == "error"
    assert "could not be started" in (result.error or "")
    assert "no-such-command-xyz" in (result.error or "")


def test_the_agent_runs_as_node_with_its_home(project: ProjectHelper) -> None:
    probe = bubblewrap.probe(shutil.which("bwrap") or "")
    result, sink = run(project, "id -un; echo $HOME; touch ~/x && echo home-writable; hostname")
    assert result.exit_code == 0, sink.stderr
    lines = sink.text.split()
    if probe.userns:
        assert lines[0] == "node"
    assert lines[1:] == ["/home/node", "home-writable", "nanoclaw-dev"]


def test_prepare_base_checks_bubblewrap_works(project: ProjectHelper) -> None:
    summary = plugin.prepare(request=PrepareRequest(project=project.project, settings=BWRAP))
    assert summary and "works" in summary


def test_engine_status_says_what_is_enforced() -> None:
    status = plugin.engine_status(settings=BWRAP)
    assert status.available and status.engine == "bubblewrap"
    assert "limits" in status.detail


def test_an_interpreter_under_tmp_stays_visible_in_the_sandbox(tmp_path: Path) -> None:
    # The sandbox's private /tmp must not hide a host interpreter (or virtual environment)
    # that lives under /tmp: the example agent runs with the host's own interpreter.
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # The new environment imports what this one does (the core and the container runtime).
    (Path(purelib) / "outer.pth").write_text(
        "\n".join(p for p in sys.path if p and Path(p).is_dir()) + "\n"
    )
    root = tmp_path / "project"
    (root / "groups" / "dev").mkdir(parents=True)
    env = {
        **os.environ,
        "CONTAINER_ENGINE": "bubblewrap",
        "CONTAINER_RUNTIME": "container",
        "NANOCLAW_MOUNT_ALLOWLIST": str(tmp_path / "none.json"),
    }
    stdin = b'{"prompt": "hi", "groupFolder": "dev", "chatJid": "c", "isMain": false}'
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "nanoclaw_runtimes_core",
            "--root",
            str(root),
            "run",
            "dev",
        ],
        input=stdin,
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"You said: 'hi'" in proc.stdout
