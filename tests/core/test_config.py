"""Reading groups/{folder}/config.json and .env: syntax, keys, types, caching, precedence."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import attrs
import pytest

from nanoclaw_runtimes_core.config import (
    FileCache,
    GroupConfig,
    check_group_keys,
    dotenv_problems,
    load_dotenv_values,
    load_group_config,
    resolve_group_settings,
    try_resolve_group_settings,
)
from nanoclaw_runtimes_core.errors import ConfigError, UserError
from nanoclaw_runtimes_core.models import Project
from nanoclaw_runtimes_core.settings import (
    CoreSettings,
    positive,
    raise_problems,
    setting,
    try_resolve_settings,
)

FILE = "groups/dev/config.json"


@attrs.define(frozen=True, kw_only=True)
class FakeVibe:
    image: str = setting("base.raw", env="FAKEVIBE_BASE_IMAGE", key="vibeImage")
    cpus: int = setting(2, env="FAKEVIBE_CPUS", key="cpus", validator=positive)
    debug: bool = setting(False, env="FAKEVIBE_DEBUG")


OTHERS = {"vibe": {"vibeImage", "cpus"}, "tart": {"tartImage", "cpus"}}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "groups" / "dev").mkdir(parents=True)
    return Project(root=tmp_path)


def write(project: Project, text: str, folder: str = "dev") -> Path:
    path = project.root / "groups" / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(project: Project, data, folder: str = "dev") -> Path:
    return write(project, json.dumps(data, indent=2), folder)


def problems(project: Project, folder: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_group_config(project, folder)
    return info.value.problems


# --------------------------------------------------------------------------- reading


def test_missing_file_is_an_empty_config(project):
    config = load_group_config(project, "dev")
    assert config.exists is False
    assert config.runtime is None and config.cpus is None and config.additional_mounts == ()
    assert dict(config.raw) == {} and config.problems == ()
    assert config.file == FILE


def test_missing_group_folder_is_an_empty_config_too(project):
    assert load_group_config(project, "newgroup").exists is False


def test_valid_file(project):
    write_json(
        project,
        {
            "$schema": "https://example.invalid/schema.json",
            "containerConfig": {
                "runtime": "vibe",
                "vibeImage": "custom-dev.raw",
                "cpus": 4,
                "ram": 4096,
                "timeout": 600000,
                "additionalMounts": [{"hostPath": "~/projects/x", "readonly": False}],
            },
        },
    )
    config = load_group_config(project, "dev")
    assert config.exists
    assert (config.runtime, config.cpus, config.ram, config.timeout) == ("vibe", 4, 4096, 600000)
    assert config.raw["vibeImage"] == "custom-dev.raw"
    (mount,) = config.additional_mounts
    assert mount.host_path == "~/projects/x" and mount.readonly is False
    assert mount.container_path is None


def test_invalid_json_names_line_and_column(project):
    write(project, '{\n  "containerConfig": {\n    "cpus": 4 "ram": 2048\n  }\n}\n')
    assert problems(project) == [
        f"{FILE}: line 3, column 15: invalid JSON: Expecting ',' delimiter"
    ]


def test_trailing_comma_is_invalid_json(project):
    write(project, '{"containerConfig": {"cpus": 4,}}')
    (line,) = problems(project)
    # Python 3.13 points at the comma, older versions at the brace after it.
    assert re.match(rf"{re.escape(FILE)}: line 1, column 3[12]: invalid JSON: \S", line)


def test_nan_is_not_json(project):
    write(project, '{"containerConfig": {"cpus": NaN}}')
    assert problems(project) == [f"{FILE}: invalid JSON: NaN is not valid JSON; write a number"]


def test_not_utf8(project):
    path = project.root / "groups" / "dev" / "config.json"
    path.write_bytes(b'{"containerConfig": {"runtime": "\xff"}}')
    assert problems(project) == [f"{FILE}: is not UTF-8 text (bad byte at offset 33)"]


def test_top_level_must_be_an_object(project):
    write(project, "[1, 2]")
    assert problems(project) == [
        f'{FILE}: the top level must be an object like {{"containerConfig": {{...}}}}, got a list'
    ]


def test_container_config_must_be_an_object(project):
    write_json(project, {"containerConfig": "vibe"})
    assert problems(project) == [f"{FILE}: containerConfig: expected an object, got a string"]


def test_unknown_top_level_key_suggests_the_known_one(project):
    write_json(project, {"containreConfig": {"cpus": 4}})
    assert problems(project) == [
        f'{FILE}: containreConfig: unknown key; did you mean "containerConfig"?'
    ]


def test_wrong_type_names_file_and_json_path(project):
    write_json(project, {"containerConfig": {"cpus": "four"}})
    assert problems(project) == [f'{FILE}: containerConfig.cpus: expected an integer, got "four"']


def test_negative_cpus(project):
    write_json(project, {"containerConfig": {"cpus": -2}})
    assert problems(project) == [f"{FILE}: containerConfig.cpus: must be at least 1, got -2"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"timeout": "600000"}, 'containerConfig.timeout: expected an integer, got "600000"'),
        ({"timeout": 1.5}, "containerConfig.timeout: expected an integer, got 1.5"),
        ({"ram": True}, "containerConfig.ram: expected an integer, got true"),
        ({"runtime": 3}, "containerConfig.runtime: expected a string, got 3"),
        (
            {"additionalMounts": {}},
            "containerConfig.additionalMounts: expected a list of objects, got {}",
        ),
    ],
)
def test_common_key_types(project, value, message):
    write_json(project, {"containerConfig": value})
    assert problems(project) == [f"{FILE}: {message}"]


def test_every_error_of_the_file_at_once(project):
    write_json(
        project,
        {
            "containreConfig": {},
            "containerConfig": {
                "cpus": "four",
                "ram": 12,
                "additionalMounts": [{"hostPath": 1}, {"containerPath": "x"}],
            },
        },
    )
    assert problems(project) == [
        f'{FILE}: containreConfig: unknown key; did you mean "containerConfig"?',
        f'{FILE}: containerConfig.cpus: expected an integer, got "four"',
        f"{FILE}: containerConfig.additionalMounts[0].hostPath: expected a string, got 1",
        f"{FILE}: containerConfig.additionalMounts[1].hostPath: missing: a string is required",
        f"{FILE}: containerConfig.ram: must be at least 64 MB, got 12",
    ]


def test_duplicate_keys_are_reported(project):
    write(project, '{"containerConfig": {"cpus": 2, "cpus": 4}}')
    assert problems(project) == [
        f"{FILE}: containerConfig.cpus: duplicate key; only the last one would count, "
        "remove the other"
    ]


def test_lenient_load_returns_problems_and_the_good_values(project):
    write_json(project, {"containerConfig": {"cpus": "four", "ram": 1024, "runtime": "vibe"}})
    config = load_group_config(project, "dev", strict=False)
    assert [str(p) for p in config.problems] == [
        f'{FILE}: containerConfig.cpus: expected an integer, got "four"'
    ]
    assert (config.cpus, config.ram, config.runtime) == (None, 1024, "vibe")


def test_bad_group_name_is_refused_before_any_file_is_read(project):
    with pytest.raises(UserError, match="invalid group name"):
        load_group_config(project, "../etc")


# --------------------------------------------------------------------------- cache


def test_config_is_reread_when_the_file_changes(project):
    path = write_json(project, {"containerConfig": {"cpus": 2}})
    first = load_group_config(project, "dev")
    assert first.cpus == 2
    assert load_group_config(project, "dev") is first  # unchanged: served from the cache

    write_json(project, {"containerConfig": {"cpus": 3}})  # same size, new content
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse clocks
    assert load_group_config(project, "dev").cpus == 3

    write_json(project, {"containerConfig": {"cpus": "x"}})
    assert problems(project)

    path.unlink()
    assert load_group_config(project, "dev").exists is False


def test_replacing_the_file_by_rename_is_seen(project):
    path = write_json(project, {"containerConfig": {"cpus": 2}})
    assert load_group_config(project, "dev").cpus == 2
    tmp = path.with_name("config.json.tmp")
    tmp.write_text(json.dumps({"containerConfig": {"cpus": 5}}))
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with an identical mtime
    tmp.replace(path)
    assert load_group_config(project, "dev").cpus == 5


def test_file_cache_calls_the_loader_only_when_the_file_changed(tmp_path):
    cache = FileCache()
    path = tmp_path / "f"
    path.write_text("a")
    calls = []

    def load(p: Path) -> str:
        calls.append(p)
        return p.read_text()

    assert cache.get(path, load) == "a"
    assert cache.get(path, load) == "a"
    assert len(calls) == 1
    path.write_text("bb")
    assert cache.get(path, load) == "bb"
    assert len(calls) == 2
    cache.clear()
    cache.get(path, load)
    assert len(calls) == 3


# --------------------------------------------------------------------------- runtime keys


def config_with(project, container: dict) -> GroupConfig:
    write_json(project, {"containerConfig": container})
    return load_group_config(project, "dev", strict=False)


def test_key_of_another_runtime_is_named_with_the_fix(project):
    config = config_with(project, {"vibeImage": "dev.raw"})
    found = check_group_keys(config, "container", {"containerImage"}, OTHERS)
    assert [str(p) for p in found] == [
        f'{FILE}: containerConfig.vibeImage: belongs to runtime "vibe", but this group runs on '
        '"container"; remove it or set "runtime": "vibe"'
    ]


def test_unknown_runtime_key_suggests_the_nearest(project):
    config = config_with(project, {"vibeImge": "dev.raw", "timout": 5, "cpus": 2})
    found = [str(p) for p in check_group_keys(config, "vibe", {"vibeImage", "cpus"}, OTHERS)]
    assert found == [
        f'{FILE}: containerConfig.vibeImge: unknown key; did you mean "vibeImage"?',
        f'{FILE}: containerConfig.timout: unknown key; did you mean "timeout"?',
    ]


def test_common_and_own_keys_are_known(project):
    config = config_with(project, {"runtime": "vibe", "vibeImage": "a", "ram": 512, "timeout": 9})
    assert check_group_keys(config, "vibe", {"vibeImage"}, OTHERS) == []


def test_resolve_group_settings_reports_file_keys_and_environment_at_once(project):
    config = config_with(project, {"cpus": "four", "tartImage": "x", "vibeImge": "y"})
    with pytest.raises(ConfigError) as info:
        resolve_group_settings(
            config,
            FakeVibe,
            runtime_name="vibe",
            other_runtimes_keys=OTHERS,
            environ={"FAKEVIBE_DEBUG": "maybe"},
            dotenv={"FAKEVIBE_BASE_IMAGE": None},
        )
    assert info.value.problems == [
        f'{FILE}: containerConfig.cpus: expected an integer, got "four"',
        f'{FILE}: containerConfig.tartImage: belongs to runtime "tart", but this group runs on '
        '"vibe"; remove it or set "runtime": "tart"',
        f'{FILE}: containerConfig.vibeImge: unknown key; did you mean "vibeImage"?',
        ".env: FAKEVIBE_BASE_IMAGE: has no value; write FAKEVIBE_BASE_IMAGE=VALUE",
        "environment: FAKEVIBE_DEBUG: expected a boolean (1/0, true/false, yes/no, on/off), "
        'got "maybe"',
    ]


def test_runtime_without_settings_allows_only_common_keys(project):
    config = config_with(project, {"cpus": 2, "vibeImage": "x"})
    result = try_resolve_group_settings(
        config, None, runtime_name="bare", other_runtimes_keys=OTHERS, environ={}, dotenv={}
    )
    assert result.settings is None
    assert [p.location for p in result.problems] == ["containerConfig.vibeImage"]


def test_core_and_runtime_problems_merge_into_one_error(project):
    config = config_with(project, {"timeout": -5, "cpus": 0})
    core = try_resolve_settings(
        CoreSettings,
        group_values=config.raw,
        group_file=config.file,
        environ={"MAX_CONCURRENT_CONTAINERS": "many"},
        dotenv={},
    )
    runtime = try_resolve_group_settings(
        config, FakeVibe, runtime_name="vibe", other_runtimes_keys=OTHERS, environ={}, dotenv={}
    )
    with pytest.raises(ConfigError) as info:
        raise_problems(runtime.problems, core.problems)
    # cpus and timeout are checked by the core and by the runtime: each is reported once.
    assert info.value.problems == [
        f"{FILE}: containerConfig.cpus: must be at least 1, got 0",
        f"{FILE}: containerConfig.timeout: must be greater than 0, got -5",
        'environment: MAX_CONCURRENT_CONTAINERS: expected an integer, got "many"',
    ]


def test_precedence_with_real_files(project, monkeypatch):
    (project.root / ".env").write_text("FAKEVIBE_CPUS=3\nFAKEVIBE_BASE_IMAGE=env-file.raw\n")
    monkeypatch.setenv("FAKEVIBE_BASE_IMAGE", "process.raw")
    monkeypatch.setenv("FAKEVIBE_DEBUG", "on")
    config = config_with(project, {"vibeImage": "group.raw"})

    def settings() -> FakeVibe:
        return resolve_group_settings(
            load_group_config(project, "dev"),
            FakeVibe,
            runtime_name="vibe",
            other_runtimes_keys=OTHERS,
            environ=os.environ,
            dotenv=load_dotenv_values(project.root),
        )

    assert config.raw["vibeImage"] == "group.raw"
    s = settings()
    assert (s.image, s.cpus, s.debug) == ("group.raw", 3, True)
    write_json(project, {"containerConfig": {}})
    assert settings().image == "process.raw"
    monkeypatch.delenv("FAKEVIBE_BASE_IMAGE")
    assert settings().image == "env-file.raw"
    (project.root / ".env").write_text("FAKEVIBE_CPUS=3\n")
    assert settings().image == "base.raw"


# --------------------------------------------------------------------------- .env


def test_dotenv_values_do_not_touch_os_environ(project, monkeypatch):
    monkeypatch.delenv("NCR_TEST_ONLY_IN_DOTENV", raising=False)
    (project.root / ".env").write_text(
        "# comment\nNCR_TEST_ONLY_IN_DOTENV=1\nexport QUOTED='a b'\nBARE\nREF=${HOME}\n"
    )
    values = load_dotenv_values(project.root)
    assert values == {
        "NCR_TEST_ONLY_IN_DOTENV": "1",
        "QUOTED": "a b",
        "BARE": None,
        "REF": "${HOME}",  # no interpolation
    }
    assert "NCR_TEST_ONLY_IN_DOTENV" not in os.environ
    values["NEW"] = "x"  # a fresh dict each time: the cache is not changed
    assert "NEW" not in load_dotenv_values(project.root)


def test_missing_dotenv_is_empty(project):
    assert load_dotenv_values(project.root) == {}
    assert dotenv_problems(project.root) == []


def test_dotenv_is_reread_when_it_changes(project):
    path = project.root / ".env"
    path.write_text("A=1\n")
    assert load_dotenv_values(project.root) == {"A": "1"}
    path.write_text("A=22\n")
    assert load_dotenv_values(project.root) == {"A": "22"}


def test_dotenv_lines_that_do_not_parse_are_reported(project):
    (project.root / ".env").write_text("A=1\n'oops\nB=2\n")
    found = [str(p) for p in dotenv_problems(project.root)]
    assert len(found) == 1
    assert found[0].startswith('.env: line 2: cannot parse "\'oops"')
