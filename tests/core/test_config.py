"""Configuration files: strict JSON, .env, a group's config.json and which version is trusted."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.config import groupconfig, jsonfile, trust
from nanoclaw_runtimes_core.config.dotenv import read_dotenv
from nanoclaw_runtimes_core.testing import NanoclawProject, RecordingSink

FILE = "groups/dev/config.json"


def _problems(data: bytes) -> list[str]:
    return [str(p) for p in jsonfile.parse(data, FILE)[1]]


# --------------------------------------------------------------------------- strict JSON


def test_duplicate_keys_are_reported_at_every_depth() -> None:
    data = b'{"containerConfig": {"cpus": 1, "cpus": 2, "m": [{"a": 1, "a": 2}]}, "x": 1, "x": 2}'
    assert _problems(data) == [
        f"{FILE}: x: duplicate key; only one may be written, remove the other",
        f"{FILE}: containerConfig.cpus: duplicate key; only one may be written, remove the other",
        f"{FILE}: containerConfig.m[0].a: duplicate key; only one may be written, remove the other",
    ]


def test_deep_nesting_large_files_nan_and_bad_utf8_are_refused() -> None:
    deep = b"[" * 33 + b"]" * 33
    assert _problems(deep) == [f"{FILE}: nests objects or lists more than 32 levels deep"]
    assert jsonfile.parse(b"[" * 32 + b"]" * 32, FILE)[1] == []
    # A string holding brackets is not nesting.
    assert jsonfile.parse(json.dumps(["[" * 100]).encode(), FILE)[1] == []
    big = b'{"a": "' + b"x" * jsonfile.MAX_BYTES + b'"}'
    assert "at most 1048576 are read" in _problems(big)[0]
    assert _problems(b'{"cpus": NaN}') == [
        f"{FILE}: invalid JSON: NaN is not valid JSON; write a number"
    ]
    assert "Infinity is not valid JSON" in _problems(b'{"cpus": -Infinity}')[0]
    assert _problems(b'{"a": "\xff"}') == [f"{FILE}: is not UTF-8 text (bad byte at offset 7)"]
    assert _problems(b'{"a": 1,}')[0].startswith(f"{FILE}: line 1, column 9: invalid JSON")


# --------------------------------------------------------------------------- .env


def test_dotenv_values_and_bad_lines_with_their_line_number(project: NanoclawProject) -> None:
    project.write_env("A=1\nexport B='two words'\n'oops\nC\nD=${A}\n")
    env = read_dotenv(project.root)
    assert env.values == {"A": "1", "B": "two words", "C": None, "D": "${A}"}
    assert [str(p) for p in env.problems] == [
        '.env: line 3: cannot parse "\'oops": write NAME=value and close every quote'
    ]


def test_dotenv_that_is_not_utf8_or_holds_nul(project: NanoclawProject) -> None:
    project.write_env(b"A=\xff\n")
    assert [str(p) for p in read_dotenv(project.root).problems] == [
        ".env: is not UTF-8 text (bad byte at offset 2)"
    ]
    project.write_env(b'A="x\\x00y"\nB=\x00\n')
    problems = [str(p) for p in read_dotenv(project.root).problems]
    assert ".env: B: must not contain a NUL character" in problems


def test_a_folder_or_fifo_as_dotenv_is_a_problem_not_a_hang(project: NanoclawProject) -> None:
    (project.root / ".env").mkdir()
    assert "is a folder, not a regular file" in str(read_dotenv(project.root).problems[0])
    (project.root / ".env").rmdir()
    os.mkfifo(project.root / ".env")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(read_dotenv(project.root)), daemon=True)
    reader.start()
    reader.join(5)
    assert found, "reading a FIFO .env hung"
    assert "is a FIFO, not a regular file" in str(found[0].problems[0])  # type: ignore[attr-defined]


def test_a_linked_dotenv_is_not_followed(project: NanoclawProject, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("A=1\n")
    (project.root / ".env").symlink_to(target)
    env = read_dotenv(project.root)
    assert env.values == {} and "symbolic link" in str(env.problems[0])


# --------------------------------------------------------------------------- a group's config.json


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"[1]", 'the top level must be an object like {"containerConfig": {...}}, got a list'),
        (
            b'{"containreConfig": {}}',
            'containreConfig: unknown key; did you mean "containerConfig"?',
        ),
        (b'{"containerConfig": 3}', "containerConfig: expected an object, got the number 3"),
    ],
)
def test_config_shape_problems(text: bytes, problem: str) -> None:
    cfg = groupconfig.parse(text, file=FILE)
    assert [str(p) for p in cfg.problems] == [f"{FILE}: {problem}"]


def test_dollar_keys_are_ignored_and_a_missing_file_is_empty() -> None:
    cfg = groupconfig.parse(b'{"$schema": "x", "containerConfig": {"cpus": 2}}', file=FILE)
    assert not cfg.problems and dict(cfg.container) == {"cpus": 2}
    empty = groupconfig.parse(None, file=FILE)
    assert not empty.exists and not empty.container


def test_a_linked_config_is_refused(runtimes: nc.Runtimes, project: NanoclawProject) -> None:
    project.group("dev")
    (project.group_path("dev") / "config.json").symlink_to("/etc/passwd")
    with pytest.raises(nc.ConfigError, match="symbolic link; the host never follows one"):
        runtimes.plan("dev")


# --------------------------------------------------------------------------- trust


CHANGE = 'printf \'%s\' \'{"containerConfig": {"runtime": "subproc", "level": 9}}\' > config.json'


def _config(level: int) -> dict[str, object]:
    return {"runtime": "subproc", "level": level}


def test_a_change_made_during_a_run_is_refused_until_trusted(
    runtimes: nc.Runtimes, project: NanoclawProject
) -> None:
    project.group("dev", _config(2))
    sink = RecordingSink()
    result = runtimes.execute("dev", command=["sh", "-c", CHANGE], sink=sink)
    assert result.exit_code == 0
    assert any("was changed by the group's sandbox during this run" in p for p in sink.problems)
    plan = runtimes.plan("dev")
    assert plan.settings.level == 2, "the sandbox's version is in force"
    assert plan.problems and "config trust dev" in plan.problems[0]
    # The refusal holds for later runs too.
    sink = RecordingSink()
    runtimes.execute("dev", command=["true"], sink=sink)
    assert runtimes.plan("dev").settings.level == 2
    assert any("was changed by the group's sandbox during a run" in p for p in sink.problems)
    assert runtimes.trust_config("dev") is True
    assert runtimes.plan("dev").settings.level == 9
    assert not runtimes.plan("dev").problems


def test_a_change_made_by_a_killed_run_is_refused(
    runtimes: nc.Runtimes, project: NanoclawProject
) -> None:
    project.group("dev", _config(2))
    live = groupconfig.read_live(project.group_path("dev"))
    plan = runtimes.plan("dev")
    trust.begin_run(project.root, "dev", live, plan.config)  # the run never ends: it was killed
    project.write_config("dev", _config(7))
    again = runtimes.plan("dev")
    assert again.settings.level == 2
    assert "was changed during a run of the group that was killed" in again.problems[0]


def test_an_edit_between_runs_is_the_users_and_is_accepted(
    runtimes: nc.Runtimes, project: NanoclawProject
) -> None:
    project.group("dev", _config(2))
    assert runtimes.execute("dev", command=["true"]).exit_code == 0
    project.write_config("dev", _config(5))
    plan = runtimes.plan("dev")
    assert plan.settings.level == 5 and not plan.problems


def test_an_invalid_file_is_not_trusted(runtimes: nc.Runtimes, project: NanoclawProject) -> None:
    project.group("dev", "{not json")
    with pytest.raises(nc.ConfigError, match="invalid JSON"):
        runtimes.trust_config("dev")
