"""Declaring settings and resolving them strictly: precedence, types, validators, messages."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest

from nanoclaw_runtimes_core.errors import ConfigError
from nanoclaw_runtimes_core.settings import (
    COMMON_KEYS,
    CommonGroupKeys,
    CoreSettings,
    Problem,
    at_least,
    describe_settings,
    known_env,
    known_keys,
    one_of,
    parse_env_value,
    positive,
    raise_problems,
    resolve_settings,
    setting,
    suggest,
    try_resolve_settings,
)

GROUP_FILE = "groups/dev/config.json"


@attrs.define(frozen=True, kw_only=True)
class DemoSettings:
    images_dir: str = setting("./data/demo-images", env="DEMO_IMAGES_DIR", help="Images.")
    image: str = setting("base.raw", env="DEMO_IMAGE", key="demoImage", help="Base image.")
    cpus: int = setting(2, env="DEMO_CPUS", key="cpus", validator=positive, help="CPUs.")
    ram: int = setting(2048, env="DEMO_RAM", key="ram", validator=at_least(64, "MB"))
    ratio: float = setting(0.5, env="DEMO_RATIO", key="ratio")
    debug: bool = setting(False, env="DEMO_DEBUG", key="debug")
    tags: tuple[str, ...] = setting((), env="DEMO_TAGS", key="tags")
    network: str | None = setting(None, env="DEMO_NETWORK", key="network")
    mode: Literal["fast", "safe"] = setting("safe", env="DEMO_MODE", key="mode")
    internal: int = 7  # a plain field: neither env nor key


def resolve(group=None, environ=None, dotenv=None):
    return resolve_settings(
        DemoSettings,
        group_values=group,
        group_file=GROUP_FILE,
        environ=environ or {},
        dotenv=dotenv or {},
        dotenv_file=".env",
    )


def problems_of(group=None, environ=None, dotenv=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve(group, environ, dotenv)
    return info.value.problems


# --------------------------------------------------------------------------- precedence


def test_defaults_when_nothing_is_set():
    s = resolve()
    assert s == DemoSettings()
    assert s.cpus == 2 and s.tags == () and s.network is None and s.internal == 7


@pytest.mark.parametrize(
    ("group", "environ", "dotenv", "expected"),
    [
        ({"cpus": 8}, {"DEMO_CPUS": "4"}, {"DEMO_CPUS": "3"}, 8),
        (None, {"DEMO_CPUS": "4"}, {"DEMO_CPUS": "3"}, 4),
        ({}, {}, {"DEMO_CPUS": "3"}, 3),
        ({"other": 1}, {"UNRELATED": "9"}, {}, 2),
    ],
    ids=["group-wins", "environment-over-dotenv", "dotenv-over-default", "default"],
)
def test_precedence_group_then_environment_then_dotenv_then_default(
    group, environ, dotenv, expected
):
    assert resolve(group, environ, dotenv).cpus == expected


def test_a_bad_value_at_a_lower_level_is_not_consulted():
    # The group sets cpus, so the broken environment value is never read.
    assert resolve({"cpus": 3}, {"DEMO_CPUS": "x"}, {"DEMO_CPUS": "y"}).cpus == 3


def test_env_only_setting_ignores_a_group_key_of_the_same_name():
    s = resolve({"images_dir": "/elsewhere"}, {"DEMO_IMAGES_DIR": "/from-env"})
    assert s.images_dir == "/from-env"


def test_json_null_and_empty_environment_values_count_as_not_set():
    s = resolve({"cpus": None}, {"DEMO_CPUS": ""}, {"DEMO_CPUS": "5"})
    assert s.cpus == 5


def test_result_records_where_each_value_came_from():
    result = try_resolve_settings(
        DemoSettings,
        group_values={"demoImage": "g.raw"},
        group_file=GROUP_FILE,
        environ={"DEMO_CPUS": "4"},
        dotenv={"DEMO_RAM": "512"},
    )
    assert result.problems == ()
    assert result.sources == {"image": GROUP_FILE, "cpus": "environment", "ram": ".env"}


# --------------------------------------------------------------------------- strict JSON values


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cpus", "4", 'expected an integer, got "4"'),
        ("cpus", "four", 'expected an integer, got "four"'),
        ("cpus", 1.9, "expected an integer, got 1.9"),
        ("cpus", True, "expected an integer, got true"),
        ("debug", "false", 'expected true or false, got "false"'),
        ("debug", 0, "expected true or false, got 0"),
        ("demoImage", 3, "expected a string, got 3"),
        ("ratio", "0.5", 'expected a number, got "0.5"'),
        ("ratio", False, "expected a number, got false"),
        ("tags", "a,b", 'expected a list of strings, got "a,b"'),
        ("mode", "quick", 'expected one of "fast", "safe", got "quick"'),
        ("network", 1, "expected a string, got 1"),
    ],
)
def test_json_values_are_never_coerced(key, value, message):
    assert problems_of({key: value}) == [f"{GROUP_FILE}: containerConfig.{key}: {message}"]


def test_false_string_is_not_true_and_4_string_is_not_4():
    # The two classic coercions of a lax converter, checked on the values themselves.
    result = try_resolve_settings(
        DemoSettings,
        group_values={"debug": "false", "cpus": "4"},
        group_file=GROUP_FILE,
        environ={},
        dotenv={},
    )
    assert result.settings.debug is False  # the default, not bool("false")
    assert result.settings.cpus == 2  # the default, not int("4")
    assert len(result.problems) == 2


def test_list_items_are_checked_one_by_one_with_their_index():
    assert problems_of({"tags": ["a", 3, "c", None]}) == [
        f"{GROUP_FILE}: containerConfig.tags[1]: expected a string, got 3",
        f"{GROUP_FILE}: containerConfig.tags[3]: expected a string, got null",
    ]


def test_valid_json_values_are_taken_as_they_are():
    s = resolve({"cpus": 4, "ratio": 2, "debug": True, "tags": ["x", "y"], "mode": "fast"})
    assert (s.cpus, s.ratio, s.debug, s.tags, s.mode) == (4, 2.0, True, ("x", "y"), "fast")
    assert isinstance(s.ratio, float) and isinstance(s.tags, tuple)


# --------------------------------------------------------------------------- environment strings


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", " on "])
def test_env_true_spellings(text):
    assert resolve(environ={"DEMO_DEBUG": text}).debug is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off"])
def test_env_false_spellings(text):
    assert resolve(environ={"DEMO_DEBUG": text}).debug is False


@pytest.mark.parametrize("text", ["2", "y", "enabled", "truee"])
def test_env_other_booleans_are_errors(text):
    assert problems_of(environ={"DEMO_DEBUG": text}) == [
        "environment: DEMO_DEBUG: expected a boolean (1/0, true/false, yes/no, on/off), "
        f'got "{text}"'
    ]


@pytest.mark.parametrize("text", ["4.0", "0x4", "1_000", "four", "4e2", "٤"])
def test_env_integers_must_be_decimal(text):
    assert problems_of(environ={"DEMO_CPUS": text}) == [
        f"environment: DEMO_CPUS: expected an integer, got {_json(text)}"
    ]


def _json(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def test_env_integer_accepts_surrounding_blanks_and_sign():
    assert resolve(environ={"DEMO_RAM": " 4096 "}).ram == 4096
    assert parse_env_value("-3", int) == -3


def test_env_tuple_is_comma_separated():
    assert resolve(environ={"DEMO_TAGS": "a, b ,c,"}).tags == ("a", "b", "c")
    assert parse_env_value("1,2", tuple[int, ...]) == (1, 2)


def test_env_float_and_literal_and_optional():
    s = resolve(environ={"DEMO_RATIO": "1.5e1", "DEMO_MODE": "fast", "DEMO_NETWORK": "none"})
    assert (s.ratio, s.mode, s.network) == (15.0, "fast", "none")
    assert problems_of(environ={"DEMO_RATIO": "nan"}) == [
        'environment: DEMO_RATIO: expected a number, got "nan"'
    ]


def test_dotenv_problems_name_the_dotenv_file():
    assert problems_of(dotenv={"DEMO_CPUS": "x"}) == [
        '.env: DEMO_CPUS: expected an integer, got "x"'
    ]


def test_dotenv_variable_without_value_is_reported():
    assert problems_of(dotenv={"DEMO_DEBUG": None}) == [
        ".env: DEMO_DEBUG: has no value; write DEMO_DEBUG=VALUE"
    ]


# --------------------------------------------------------------------------- validators


def test_validator_failures_name_the_source_of_the_value():
    assert problems_of({"cpus": -2}) == [
        f"{GROUP_FILE}: containerConfig.cpus: must be greater than 0, got -2"
    ]
    assert problems_of(environ={"DEMO_RAM": "32"}) == [
        "environment: DEMO_RAM: must be at least 64 MB, got 32"
    ]


def test_every_problem_is_reported_at_once_from_every_source():
    problems = problems_of(
        {"cpus": "four", "debug": "false", "ram": 10},
        {"DEMO_RATIO": "x", "DEMO_MODE": "slow"},
        {"DEMO_TAGS": "ok", "DEMO_IMAGES_DIR": None},
    )
    assert problems == [
        ".env: DEMO_IMAGES_DIR: has no value; write DEMO_IMAGES_DIR=VALUE",
        f'{GROUP_FILE}: containerConfig.cpus: expected an integer, got "four"',
        'environment: DEMO_RATIO: expected a number, got "x"',
        f'{GROUP_FILE}: containerConfig.debug: expected true or false, got "false"',
        'environment: DEMO_MODE: expected one of "fast", "safe", got "slow"',
        f"{GROUP_FILE}: containerConfig.ram: must be at least 64 MB, got 10",
    ]


def test_every_validator_runs_even_after_one_fails():
    @attrs.define(frozen=True, kw_only=True)
    class Two:
        a: int = setting(1, env="A", validator=positive)
        b: str = setting("x", env="B", validator=one_of("x", "y"))

    with pytest.raises(ConfigError) as info:
        resolve_settings(
            Two, group_values=None, group_file="", environ={"A": "0", "B": "z"}, dotenv={}
        )
    assert info.value.problems == [
        "environment: A: must be greater than 0, got 0",
        'environment: B: must be one of "x", "y", got "z"',
    ]


def test_validator_may_look_at_other_fields():
    def below_max(instance, attribute, value):
        if value > instance.high:
            raise ValueError(f"must not exceed high ({instance.high}), got {value}")

    @attrs.define(frozen=True, kw_only=True)
    class Range:
        high: int = setting(10, env="HIGH")
        low: int = setting(0, env="LOW", validator=below_max)

    ok = resolve_settings(
        Range, group_values=None, group_file="", environ={"HIGH": "20", "LOW": "15"}, dotenv={}
    )
    assert ok.low == 15
    result = try_resolve_settings(
        Range, group_values=None, group_file="", environ={"LOW": "15"}, dotenv={}
    )
    assert [str(p) for p in result.problems] == [
        "environment: LOW: must not exceed high (10), got 15"
    ]
    assert result.settings.low == 0  # the bad value was replaced by the default


def test_resolved_settings_are_instances_of_the_declared_class():
    s = resolve({"demoImage": "dev.raw"}, {"DEMO_NETWORK": "host"})
    assert isinstance(s, DemoSettings)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.cpus = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- declarations


def test_known_keys_env_and_description():
    assert known_keys(DemoSettings) == {
        "demoImage",
        "cpus",
        "ram",
        "ratio",
        "debug",
        "tags",
        "network",
        "mode",
    }
    assert "DEMO_IMAGES_DIR" in known_env(DemoSettings)
    docs = {d.name: d for d in describe_settings(DemoSettings)}
    assert docs["image"].env == "DEMO_IMAGE" and docs["image"].key == "demoImage"
    assert docs["image"].default == "base.raw" and docs["image"].help == "Base image."
    assert docs["cpus"].type == "an integer"
    assert docs["tags"].type == "a list of strings"
    assert docs["internal"].env is None and docs["internal"].key is None


def test_mutable_default_is_refused():
    with pytest.raises(TypeError, match="immutable"):
        setting([], env="X")


def test_type_that_cannot_come_from_the_environment_is_refused_at_declaration():
    @attrs.define(frozen=True, kw_only=True)
    class Bad:
        data: dict = setting(None, env="BAD_DATA")  # noqa: RUF009

    with pytest.raises(TypeError, match="BAD_DATA"):
        known_keys(Bad)


def test_a_key_declared_twice_is_refused():
    @attrs.define(frozen=True, kw_only=True)
    class Twice:
        a: int = setting(1, key="k")
        b: int = setting(2, key="k")

    with pytest.raises(TypeError, match="declared twice"):
        known_keys(Twice)


# --------------------------------------------------------------------------- core and common keys


def test_core_settings_defaults():
    core = resolve_settings(CoreSettings, group_values=None, group_file="", environ={}, dotenv={})
    assert core.runtime is None
    assert core.max_concurrent == 5
    assert core.timeout == 1_800_000
    assert core.allowlist_path == "~/.config/nanoclaw/mount-allowlist.json"
    assert core.debug is False and core.log_level == "info"


def test_core_settings_from_environment_and_group():
    core = resolve_settings(
        CoreSettings,
        group_values={"runtime": "vibe", "timeout": 600000},
        group_file=GROUP_FILE,
        environ={"CONTAINER_RUNTIME": "container", "NANOCLAW_DEBUG": "1"},
        dotenv={"MAX_CONCURRENT_CONTAINERS": "2", "CONTAINER_TIMEOUT": "5"},
    )
    assert (core.runtime, core.timeout, core.max_concurrent, core.debug) == (
        "vibe",
        600000,
        2,
        True,
    )
    assert core.log_level == "debug"


def test_core_settings_bounds():
    with pytest.raises(ConfigError) as info:
        resolve_settings(
            CoreSettings,
            group_values=None,
            group_file="",
            environ={"MAX_CONCURRENT_CONTAINERS": "0", "CONTAINER_TIMEOUT": "-1"},
            dotenv={},
        )
    assert info.value.problems == [
        "environment: MAX_CONCURRENT_CONTAINERS: must be at least 1, got 0",
        "environment: CONTAINER_TIMEOUT: must be greater than 0, got -1",
    ]


def test_common_group_keys():
    assert {"runtime", "cpus", "ram", "timeout", "additionalMounts"} == COMMON_KEYS
    with pytest.raises(ConfigError) as info:
        resolve_settings(
            CommonGroupKeys,
            group_values={"cpus": -1, "ram": 32, "timeout": 0, "runtime": ""},
            group_file=GROUP_FILE,
            environ={},
            dotenv={},
        )
    assert info.value.problems == [
        f"{GROUP_FILE}: containerConfig.runtime: must not be empty",
        f"{GROUP_FILE}: containerConfig.cpus: must be at least 1, got -1",
        f"{GROUP_FILE}: containerConfig.ram: must be at least 64 MB, got 32",
        f"{GROUP_FILE}: containerConfig.timeout: must be greater than 0, got 0",
    ]


def test_additional_mounts_errors_use_the_users_camel_case_paths():
    with pytest.raises(ConfigError) as info:
        resolve_settings(
            CommonGroupKeys,
            group_values={
                "additionalMounts": [
                    {"hostPath": "~/ok"},
                    {"hostpath": "~/x", "readonly": "false"},
                    "~/just-a-string",
                    {"hostPath": "~/y", "containerPath": 5},
                ]
            },
            group_file=GROUP_FILE,
            environ={},
            dotenv={},
        )
    prefix = f"{GROUP_FILE}: containerConfig.additionalMounts"
    assert info.value.problems == [
        f"{prefix}[1].hostPath: missing: a string is required",
        f'{prefix}[1].readonly: expected true or false, got "false"',
        f'{prefix}[1].hostpath: unknown key; did you mean "hostPath"?',
        f'{prefix}[2]: expected an object, got "~/just-a-string"',
        f"{prefix}[3].containerPath: expected a string, got 5",
    ]


def test_additional_mounts_structure():
    keys = resolve_settings(
        CommonGroupKeys,
        group_values={
            "additionalMounts": [{"hostPath": "~/p", "containerPath": "p", "readonly": False}]
        },
        group_file=GROUP_FILE,
        environ={},
        dotenv={},
    )
    (mount,) = keys.additional_mounts
    assert (mount.host_path, mount.container_path, mount.readonly) == ("~/p", "p", False)
    assert (
        resolve_settings(
            CommonGroupKeys,
            group_values={"additionalMounts": [{"hostPath": "~/p"}]},
            group_file="",
            environ={},
            dotenv={},
        )
        .additional_mounts[0]
        .readonly
        is True
    )


# --------------------------------------------------------------------------- helpers


def test_suggest():
    assert suggest("containreConfig", ["containerConfig"]) == 'did you mean "containerConfig"?'
    assert suggest("CPUS", ["cpus", "ram"]) == 'did you mean "cpus"?'
    assert suggest("zzz", ["cpus", "ram"]) == "known keys: cpus, ram"


def test_raise_problems_reports_a_location_once():
    first = Problem(GROUP_FILE, "containerConfig.cpus", "must be at least 1, got 0")
    second = Problem(GROUP_FILE, "containerConfig.cpus", "must be greater than 0, got 0")
    other = Problem("environment", "X", "bad")
    with pytest.raises(ConfigError) as info:
        raise_problems([first, other], [second])
    assert info.value.problems == [str(first), str(other)]
    raise_problems([], [])  # nothing to report: no exception
