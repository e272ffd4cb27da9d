"""Planning (pure) and one run through the dispatcher: hooks in order, run logs, redaction."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.testing import NanoclawProject, RecordingSink

from .conftest import SubprocRuntime, ask


def _tree(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


# --------------------------------------------------------------------------- planning


def test_planning_creates_no_file_or_folder(
    runtimes: nc.Runtimes, project: NanoclawProject
) -> None:
    project.group("dev", {"runtime": "subproc", "level": 3})
    project.group("main")
    project.write_env("SUBPROC_FLAVOUR=spicy\n")
    before = _tree(project.base)
    for folder in ("dev", "main"):
        plan = runtimes.plan(folder)
        assert plan.runtime == "subproc"
    runtimes.check_config()
    assert runtimes.plan("dev").settings.flavour == "spicy"
    assert _tree(project.base) == before


def test_the_plan_says_where_each_setting_came_from(
    runtimes: nc.Runtimes, project: NanoclawProject, environ: dict[str, str]
) -> None:
    environ["SUBPROC_FLAVOUR"] = "env"
    project.write_env("SUBPROC_LEVEL=4\n")
    project.group("dev", {"runtime": "subproc", "timeout": 5000})
    plan = runtimes.plan("dev")
    origins = {k: str(v) for k, v in plan.origins.items()}
    assert origins["core.runtime"] == "groups/dev/config.json: containerConfig.runtime"
    assert origins["core.timeout"] == "groups/dev/config.json: containerConfig.timeout"
    assert origins["subproc.flavour"] == "environment: SUBPROC_FLAVOUR"
    assert origins["subproc.level"] == ".env: SUBPROC_LEVEL"
    assert origins["core.max_concurrent"] == "default"
    assert runtimes.plan("dev", timeout_ms=7).origins["core.timeout"].source == "--timeout"


def test_keys_of_another_runtime_and_unknown_keys_are_errors(
    runtimes: nc.Runtimes, project: NanoclawProject, registry: object
) -> None:
    other = SubprocRuntime()

    @nc.settings_class
    class OtherSettings:
        vibe_image: str = nc.setting("base.raw", key="vibeImage", help="An image.")

    other.runtime_settings = nc.hookimpl(lambda: OtherSettings)  # type: ignore[method-assign]
    registry.register("other", other, distribution="tests")  # type: ignore[attr-defined]
    project.group("dev", {"runtime": "subproc", "vibeImage": "x", "levl": 2})
    with pytest.raises(nc.ConfigError) as err:
        runtimes.plan("dev")
    assert err.value.problems == [
        'groups/dev/config.json: containerConfig.vibeImage: belongs to runtime "other", but this '
        'group runs on "subproc"; remove it or set "runtime": "other"',
        'groups/dev/config.json: containerConfig.levl: unknown key; did you mean "level"?',
    ]


# --------------------------------------------------------------------------- a run


def test_a_run_calls_prepare_then_execute_with_the_contract(
    runtimes: nc.Runtimes, project: NanoclawProject, runtime: SubprocRuntime
) -> None:
    project.group("dev", {"runtime": "subproc", "env": ["GREETING=hi"]})
    sink = RecordingSink()
    result = runtimes.execute("dev", input=ask("dev", "ping"), sink=sink)
    assert result.status == "success" and result.exit_code == 0
    assert runtime.calls == ["prepare", "execute"]
    request = runtime.requests[0]
    assert request.env["GREETING"] == "hi" and "PATH" not in request.env
    assert re.fullmatch(r"nc-dev-[0-9a-f]{6}-[0-9a-f]{12}", request.run_name)
    assert request.masks[0].container_path == "/workspace/group/config.json"
    assert request.user.uid != 0, "the sandbox acts as root"
    assert (sink.outputs[0].result or "").startswith("Andy here")
    assert sink.stdout.count(b"---NANOCLAW_OUTPUT_START---") == 2


def test_bad_requests_are_refused(runtimes: nc.Runtimes, project: NanoclawProject) -> None:
    project.group("dev", {"runtime": "subproc"})
    with pytest.raises(nc.UserError, match="either a ContainerInput or a command"):
        runtimes.execute("dev")
    with pytest.raises(nc.UserError, match="the command after `--` is empty"):
        runtimes.execute("dev", command=[])
    with pytest.raises(nc.UserError, match="groupFolder is 'other'"):
        runtimes.execute("dev", input=ask("other"))


def test_one_run_log_per_run_in_nanoclaws_format(
    runtimes: nc.Runtimes, project: NanoclawProject
) -> None:
    project.group("dev", {"runtime": "subproc"})
    runtimes.execute("dev", input=ask("dev", "hello there"))
    logs = project.run_logs("dev")
    assert len(logs) == 1
    assert re.fullmatch(r"container-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z\.log", logs[0].name)
    lines = logs[0].read_text().split("\n")
    assert lines[0] == "=== Container Run Log ==="
    assert re.fullmatch(r"Timestamp: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[1])
    assert lines[2:8] == [
        "Group: dev",
        "IsMain: false",
        lines[4],
        "Exit Code: 0",
        "Stdout Truncated: false",
        "Stderr Truncated: false",
    ]
    assert re.fullmatch(r"Duration: \d+ms", lines[4])
    assert lines[8:13] == [
        "",
        "=== Input Summary ===",
        "Prompt length: 11 chars",
        "Session ID: new",
        "",
    ]
    assert "=== Mounts ===" in lines and "/workspace/global (ro)" in lines
    assert "Runtime: subproc" in lines and "Status: success" in lines
    runtimes.execute("dev", command=["sh", "-c", "echo oops >&2; exit 4"])
    logs = project.run_logs("dev")
    assert len(logs) == 2
    failed = logs[1].read_text()
    assert (
        "Exit Code: 4" in failed and "=== Container Args ===\nsh -c echo oops >&2; exit 4" in failed
    )
    assert "=== Stderr ===\noops\n" in failed and not failed.endswith("\n")


def test_a_timeout_log(runtimes: nc.Runtimes, project: NanoclawProject) -> None:
    project.group("dev", {"runtime": "subproc"})
    result = runtimes.execute("dev", command=["sleep", "30"], timeout_ms=300)
    assert result.timed_out and result.error_message() == "Container timed out after 300ms"
    text = project.run_logs("dev")[0].read_text()
    assert text.startswith("=== Container Run Log (TIMEOUT) ===\n")
    assert "Had Streaming Output: false" in text


def test_secrets_are_redacted_in_logs_warnings_and_errors(
    runtimes: nc.Runtimes, project: NanoclawProject, environ: dict[str, str]
) -> None:
    secret, env_secret = "sk-input-secret-1234", "sk-env-secret-5678"
    environ["API_TOKEN"] = env_secret
    project.group("dev", {"runtime": "subproc", "env": ["API_TOKEN"]})
    agent = (
        f'cat; echo "$API_TOKEN {secret}" >&2; '
        "printf '%s\\n' ---NANOCLAW_OUTPUT_START--- \"{bad $API_TOKEN\" ---NANOCLAW_OUTPUT_END---; "
        "exit 3"
    )
    project.write_config(
        "dev", {"runtime": "subproc", "env": ["API_TOKEN"], "agentCommand": ["sh", "-c", agent]}
    )
    sink = RecordingSink()
    result = runtimes.execute(
        "dev", input=ask("dev", secrets={"ANTHROPIC_API_KEY": secret}), sink=sink, debug=True
    )
    assert result.exit_code == 3
    assert secret in sink.stderr_text, "the sandbox's own stream passes through as it is"
    assert sink.problems and all(secret not in p and env_secret not in p for p in sink.problems)
    assert "[REDACTED]" in " ".join(sink.problems)
    assert secret not in result.stderr_tail and env_secret not in result.stderr_tail
    assert secret not in (result.error_message() or "")
    log = project.run_logs("dev")[0].read_text()
    assert "=== Input ===" in log and '"ANTHROPIC_API_KEY": "[REDACTED]"' in log
    assert secret not in log and env_secret not in log


def test_an_exception_in_execute_names_the_runtime_and_is_logged(
    runtimes: nc.Runtimes, project: NanoclawProject, runtime: SubprocRuntime
) -> None:
    def boom(request: object) -> nc.ExecutionResult:
        raise RuntimeError("engine exploded")

    runtime.execute = nc.hookimpl(boom)  # type: ignore[method-assign]
    registry = nc.Runtimes(project.root, environ=dict(runtimes.environ)).registry
    del registry
    fresh = _registry_with(runtime)
    rt = nc.Runtimes(project.root, environ=dict(runtimes.environ), registry=fresh)
    project.group("dev", {"runtime": "subproc"})
    with pytest.raises(nc.RuntimeFailure, match=r"runtime 'subproc' .* failed in execute"):
        rt.execute("dev", command=["true"])
    log = project.run_logs("dev")[0].read_text()
    assert "Error: the run was failed: RuntimeFailure" in log


def _registry_with(runtime: SubprocRuntime) -> object:
    from nanoclaw_runtimes_core.plugins import Registry

    registry = Registry()
    registry.register("subproc", runtime, distribution="tests")
    return registry


def test_prepare_reset_and_stats_reach_the_runtime(
    runtimes: nc.Runtimes, project: NanoclawProject, runtime: SubprocRuntime
) -> None:
    project.group("dev", {"runtime": "subproc"})
    project.group("other", {"runtime": "subproc"})
    assert runtimes.prepare("dev") == "ready"
    state = project.root / "data" / "runtimes" / "subproc" / "dev"
    state.mkdir(parents=True)
    (state / "disk").write_bytes(b"x" * 10)
    assert runtimes.reset("dev") == [f"removed {state} (0.0 MB)"] and not state.exists()
    assert runtimes.reset("dev", scope="warm") == []
    rows = runtimes.stats()
    assert rows[0].runtime == "subproc" and rows[0].kind == "disk"
    assert runtime.calls == ["prepare", "reset:all", "reset:warm", "stats:dev,other"]


def test_planted_entries_are_repaired_and_reported_and_the_run_goes_on(
    runtimes: nc.Runtimes, project: NanoclawProject, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    group = project.group("dev", {"runtime": "subproc"})
    ipc = project.root / "data" / "ipc" / "dev"
    ipc.mkdir(parents=True)
    (ipc / "messages").symlink_to(outside)
    (ipc / "tasks").write_text("planted")
    (group / "logs").symlink_to(outside)
    sink = RecordingSink()
    result = runtimes.execute("dev", command=["true"], sink=sink)
    assert result.exit_code == 0
    problems = "\n".join(sink.problems)
    assert f"{ipc / 'messages'}: removed a symbolic link planted in place of a folder" in problems
    assert f"{ipc / 'tasks'}: moved a file found in place of a folder to tasks.planted-" in problems
    assert f"{group / 'logs'}: removed a symbolic link planted in place of a folder" in problems
    assert (ipc / "messages").is_dir() and not (ipc / "messages").is_symlink()
    assert len(project.run_logs("dev")) == 1 and not list(outside.iterdir())
