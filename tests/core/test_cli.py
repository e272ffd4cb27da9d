"""The nanoclaw-runtimes command: exit statuses, messages, output formats."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import cli, plugins
from nanoclaw_runtimes_core.errors import ExitStatus
from nanoclaw_runtimes_core.plugins import Registry

from .conftest import SubprocessRuntime, make_group

INPUT = {"prompt": "hi", "groupFolder": "dev", "chatJid": "c@g.us", "isMain": False}


class FakeStdin(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def run_cli(root: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd):  # type: ignore[no-untyped-def]
    registry = Registry()
    registry.register("subproc", SubprocessRuntime(), distribution="tests")
    monkeypatch.setattr(plugins, "_default", registry)
    for key in ("CONTAINER_RUNTIME", "CONTAINER_TIMEOUT", "NANOCLAW_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NANOCLAW_MOUNT_ALLOWLIST", environ["NANOCLAW_MOUNT_ALLOWLIST"])

    def run(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", FakeStdin(io.BytesIO(stdin)))
        code = cli.main(["--root", str(root), *args])
        out, err = capfd.readouterr()
        return code, out, err

    return run


def test_run_prints_blocks_between_markers(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    code, out, _ = run_cli("run", "dev", stdin=json.dumps(INPUT).encode())
    assert code == ExitStatus.OK
    assert out.count("---NANOCLAW_OUTPUT_START---") == 2
    first = json.loads(out.split("\n")[1])
    assert first["status"] == "success" and "hi" in first["result"]


def test_run_with_bad_stdin_says_where(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    code, _, err = run_cli("run", "dev", stdin=b'{"prompt": ')
    assert code == ExitStatus.USAGE and "stdin: line 1, column" in err


def test_run_command_passes_status_and_output(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    code, out, _ = run_cli("run", "dev", "--", "sh", "-c", "echo hello; exit 5")
    assert code == 5 and out == "hello\n"


def test_run_timeout_without_output_is_124(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    code, _, err = run_cli("run", "dev", "--timeout", "300", "--", "sleep", "30")
    assert code == ExitStatus.TIMEOUT and "timed out after 300 ms" in err


def test_bad_timeout_flag_is_a_usage_error(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev")
    with pytest.raises(SystemExit) as info:
        run_cli("run", "dev", "--timeout", "-5", "--", "true")
    assert info.value.code == 2


def test_config_errors_exit_3_with_file_and_path(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc", "cpus": -1}}')
    make_group(root, "bad", '{"containerConfig": {"runtime": "subproc",\n "cpus": 2,,}}')
    code, out, _ = run_cli("config", "check")
    assert code == ExitStatus.CONFIG
    assert "groups/dev/config.json: containerConfig.cpus:" in out
    assert "groups/bad/config.json: line 2, column" in out
    code, _, err = run_cli("run", "dev", "--", "true")
    assert code == ExitStatus.CONFIG and "groups/dev/config.json: containerConfig.cpus" in err


def test_bad_group_names_are_refused(run_cli) -> None:  # type: ignore[no-untyped-def]
    for name in ("../etc", "global", "a" * 65, "a.b"):
        code, _, err = run_cli("run", name, "--", "true")
        assert code != 0 and name in err


def test_unknown_runtime_flag(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev")
    code, _, err = run_cli("run", "dev", "--runtime", "tarte", "--", "true")
    assert code == ExitStatus.CONFIG
    assert "--runtime: unknown runtime 'tarte'" in err and "did you mean 'tart'" in err


def test_reset_needs_yes_without_a_terminal(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    group = make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    (group / "state").write_text("x")
    code, _, err = run_cli("reset", "dev")
    assert code == ExitStatus.USAGE and "--yes" in err and (group / "state").exists()
    code, out, _ = run_cli("reset", "dev", "--yes")
    assert code == 0 and "removed state" in out and not (group / "state").exists()


def test_stats_and_plugins_json(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("stats", "--json")
    assert code == 0 and json.loads(out)[0]["allocatedMB"] == 0.5
    code, out, _ = run_cli("plugins", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["name"] == "subproc" and rows[0]["distribution"] == "tests"
    assert "execute" in rows[0]["hooks"] and rows[0]["available"] is True


def test_doctor_reports_ok_and_problems(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    code, out, _ = run_cli("doctor")
    assert code == 0 and "ok   group dev: runtime subproc" in out
    make_group(root, "dev", '{"containerConfig": {"runtime": "nope"}}')
    code, out, _ = run_cli("doctor")
    assert code == ExitStatus.CONFIG and "FAIL group dev" in out


def test_python_dash_m_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nanoclaw_runtimes_core", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "Exit statuses" in proc.stdout
