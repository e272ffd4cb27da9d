"""The command line: exit statuses, config commands, doctor and plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.plugins import Registry, RuntimeInfo
from nanoclaw_runtimes_core.testing import NanoclawProject

from .conftest import SubprocRuntime

INPUT = json.dumps(
    {"prompt": "hi", "groupFolder": "dev", "chatJid": "c@g.us", "isMain": False, "futureField": 1}
).encode()


@pytest.fixture
def dev(project: NanoclawProject) -> str:
    project.group("dev", {"runtime": "subproc"})
    return "dev"


def test_run_passes_the_sandbox_status_and_stdout_through(cli: Any, dev: str) -> None:
    code, out, err = cli("run", dev, "--", "sh", "-c", "printf 'a\\nb'; exit 5")
    assert (code, out) == (5, "a\nb")
    code, out, err = cli("run", dev, stdin=INPUT)
    assert code == 0, err
    assert out.count("---NANOCLAW_OUTPUT_START---") == 2 and "You said: 'hi'" in out


def test_a_timeout_without_output_exits_124(cli: Any, dev: str) -> None:
    code, _out, err = cli("run", dev, "--timeout", "300", "--", "sleep", "30")
    assert code == 124
    assert "Container timed out after 300ms with no output" in err


def test_usage_errors_exit_2(cli: Any, dev: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("run")
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli("run", dev, "--timeout", "soon")
    assert exit_.value.code == 2
    code, _out, err = cli("ps", "--", "x")
    assert code == 2 and "unexpected arguments after --" in err
    code, _out, err = cli("run", "../etc", "--", "true")
    assert code == 2 and "invalid group name '../etc'" in err
    code, _out, err = cli("run", dev, stdin=b'{"prompt": 1}')
    assert code == 2 and "stdin: prompt: expected str" in err


def test_configuration_errors_exit_3_with_every_problem(cli: Any, project: NanoclawProject) -> None:
    project.group("dev", {"runtime": "subproc", "level": "high", "timout": 5})
    code, _out, err = cli("run", "dev", "--", "true")
    assert code == 3
    assert 'groups/dev/config.json: containerConfig.level: expected an integer, got "high"' in err
    assert 'containerConfig.timout: unknown key; did you mean "timeout"?' in err
    project.group("dev", {"runtime": "nope"})
    code, _out, err = cli("run", "dev", "--", "true")
    assert code == 3 and "unknown runtime 'nope'" in err


def test_no_space_exits_4(
    cli: Any, dev: str, runtime: SubprocRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(request: object) -> nc.ExecutionResult:
        raise nc.NoSpace("no space left on the device while writing x; free some space")

    runtime.execute = nc.hookimpl(full)  # type: ignore[method-assign]
    registry = Registry()
    registry.register("subproc", runtime, distribution="tests")
    from nanoclaw_runtimes_core import plugins

    monkeypatch.setattr(plugins, "_default", registry)
    code, _out, err = cli("run", dev, "--", "true")
    assert code == 4 and "free some space" in err


def test_config_check_reports_a_tainted_config(cli: Any, project: NanoclawProject) -> None:
    project.group("dev", {"runtime": "subproc"})
    project.group("ok", {"runtime": "subproc"})
    change = (
        'printf \'%s\' \'{"containerConfig": {"runtime": "subproc", "level": 9}}\' > config.json'
    )
    assert cli("run", "dev", "--", "sh", "-c", change)[0] == 0
    code, out, _err = cli("config", "check")
    assert code == 3
    assert "was changed by the group's sandbox during a run" in out
    assert "config trust dev" in out and "ok: ok (runtime subproc)" in out
    code, out, _err = cli("config", "trust", "dev")
    assert code == 0 and "it had been refused" in out
    assert cli("config", "check")[0] == 0


def test_config_schema_covers_the_core_and_the_runtimes(cli: Any) -> None:
    code, out, _err = cli("config", "schema")
    assert code == 0
    schema = json.loads(out)
    props = schema["properties"]["containerConfig"]["properties"]
    assert props["runtime"]["enum"] == ["subproc"]
    assert props["level"]["minimum"] == 1 and props["level"]["maximum"] == 9
    assert props["timeout"]["type"] == "integer"
    assert schema["properties"]["containerConfig"]["additionalProperties"] is False


def test_doctor_json_has_every_setting_with_where_it_came_from(
    cli: Any, dev: str, project: NanoclawProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanoclaw_runtimes_core.settings.core import CoreSettings
    from nanoclaw_runtimes_core.settings.fields import fields_of

    monkeypatch.setenv("SUBPROC_LEVEL", "7")
    project.write_env("MAX_CONCURRENT_CONTAINERS=3\n")
    code, out, _err = cli("doctor", "--json")
    report = json.loads(out)
    core = report["settings"]["core"]
    assert set(core) == {f.name for f in fields_of(CoreSettings)}
    assert core["max_concurrent"] == {
        "value": 3,
        "from": ".env: MAX_CONCURRENT_CONTAINERS",
        "env": "MAX_CONCURRENT_CONTAINERS",
        "key": None,
    }
    assert set(report["settings"]["subproc"]) == {"flavour", "level"}
    assert report["settings"]["subproc"]["level"]["from"] == "environment: SUBPROC_LEVEL"
    assert report["settings"]["subproc"]["level"]["value"] == 7
    assert report["settings"]["subproc"]["flavour"]["from"] == "default"
    assert report["groups"]["dev"] == {"ok": True, "runtime": "subproc"}
    assert code == 0, report["lines"]


@pytest.mark.parametrize(
    ("value", "expected", "status"),
    [
        ("", "--   resident helper: off", 0),
        ("90000", "ok   resident helper: on, stays 90000 ms", 0),
        ("soon", "FAIL NANOCLAW_RESIDENT: expected milliseconds", 3),
    ],
)
def test_doctor_says_whether_runs_go_to_a_resident_helper(
    cli: Any,
    dev: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    value: str,
    expected: str,
    status: int,
) -> None:
    monkeypatch.setenv("NANOCLAW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("NANOCLAW_RESIDENT", value)
    code, out, _err = cli("doctor", "--json")
    report = json.loads(out)
    assert any(line.startswith(expected) for line in report["lines"]), report["lines"]
    assert report["resident"]["helpers"] == []
    assert (code == 0) == (status == 0), report["lines"]


def test_plugins_lists_healthy_runtimes_beside_a_broken_one(cli: Any, registry: Registry) -> None:
    registry._broken["wreck"] = RuntimeInfo(
        name="wreck",
        distribution="nanoclaw-runtime-wreck",
        version="0.1",
        module="wreck.plugin",
        error="runtime 'wreck' (from nanoclaw-runtime-wreck): failed to load wreck.plugin",
    )
    code, out, _err = cli("plugins")
    assert code == 0
    assert "wreck: nanoclaw-runtime-wreck 0.1 — BROKEN: runtime 'wreck'" in out
    assert "subproc: tests" in out and "engine subprocess available: ready" in out
    assert "SUBPROC_LEVEL / containerConfig.level: A test number." in out
    code, out, _err = cli("plugins", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["subproc"]["available"] is True and rows["wreck"]["error"]


def test_stats_and_ps(cli: Any, dev: str) -> None:
    code, out, _err = cli("stats", "--json")
    assert code == 0 and json.loads(out)[0]["runtime"] == "subproc"
    code, out, _err = cli("ps")
    assert code == 0
    code, _out, err = cli("stop", "no-such-run")
    assert code == 2 and "no run named 'no-such-run' is in progress" in err
