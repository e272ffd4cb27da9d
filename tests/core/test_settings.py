"""Settings: declaration errors, strict values, one precedence, where each value came from."""

from __future__ import annotations

from typing import Literal

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.settings import Sources, resolve
from nanoclaw_runtimes_core.settings.core import CoreSettings
from nanoclaw_runtimes_core.settings.fields import SettingsDeclarationError, fields_of
from nanoclaw_runtimes_core.settings.values import from_json, from_text


@nc.settings_class
class Sample:
    cpus: int = nc.setting(2, env="S_CPUS", key="cpus", validator=nc.between(1, 64), help="CPUs.")
    ratio: float = nc.setting(0.5, env="S_RATIO", key="ratio", help="A ratio.")
    debug: bool = nc.setting(False, env="S_DEBUG", key="debug", help="Debug.")
    mode: Literal["fast", "safe"] = nc.setting("safe", env="S_MODE", key="mode", help="Mode.")
    tags: tuple[str, ...] = nc.setting((), env="S_TAGS", key="tags", help="Tags.")
    image: str | None = nc.setting(None, env="S_IMAGE", key="image", help="An image.")
    cmd: tuple[str, ...] | None = nc.setting(
        None, env="S_CMD", key="cmd", words=True, help="A command."
    )
    hidden: str = nc.setting("h", env="S_HIDDEN", help="No group key: only the environment.")


def sources(group=None, environ=None, dotenv=None) -> Sources:  # type: ignore[no-untyped-def]
    return Sources(
        group=group,
        group_file="groups/dev/config.json",
        environ=environ or {},
        dotenv=dotenv or {},
    )


# --------------------------------------------------------------------------- declarations


def test_a_field_without_annotation_is_refused_with_the_fix() -> None:
    @nc.settings_class
    class Bad:
        cpus = nc.setting(2, env="B_CPUS", help="CPUs.")
        ok: int = nc.setting(1, help="fine")

    with pytest.raises(SettingsDeclarationError, match=r"Bad.cpus has no type annotation; write"):
        fields_of(Bad)


def test_a_field_not_declared_with_setting_is_refused() -> None:
    @nc.settings_class
    class Bad:
        cpus: int = 2

    with pytest.raises(
        SettingsDeclarationError, match=r"Bad.cpus is not declared with setting\(\)"
    ):
        fields_of(Bad)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (dict, "is not supported"),
        (list[str], "use tuple"),
        (tuple[dict, ...], "tuple items must be"),
        (Literal[1, 2], "Literal choices must be strings"),
    ],
)
def test_unsupported_types_are_refused(annotation: object, message: str) -> None:
    cls = nc.settings_class(
        type(
            "Odd",
            (),
            {"__annotations__": {"x": annotation}, "x": nc.setting(None, help="x.", env="ODD_X")},
        )
    )
    with pytest.raises(SettingsDeclarationError, match=message):
        fields_of(cls)


def test_a_variable_or_key_declared_twice_is_refused() -> None:
    @nc.settings_class
    class TwoVars:
        a: int = nc.setting(1, env="SAME", help="a")
        b: int = nc.setting(1, env="SAME", help="b")

    @nc.settings_class
    class TwoKeys:
        a: int = nc.setting(1, key="same", help="a")
        b: int = nc.setting(1, key="same", help="b")

    with pytest.raises(SettingsDeclarationError, match="variable SAME is declared twice"):
        fields_of(TwoVars)
    with pytest.raises(SettingsDeclarationError, match="key 'same' is declared twice"):
        fields_of(TwoKeys)


def test_mutable_defaults_and_missing_help_are_refused() -> None:
    with pytest.raises(SettingsDeclarationError, match="use a tuple"):
        nc.setting([], help="x")
    with pytest.raises(SettingsDeclarationError, match="needs help="):
        nc.setting(1, help=" ")


def test_a_class_that_is_not_a_settings_class_is_refused() -> None:
    class Plain:
        pass

    with pytest.raises(SettingsDeclarationError, match="settings_class"):
        fields_of(Plain)


# --------------------------------------------------------------------------- strict values


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("4", int, 'expected an integer, got "4"'),
        (1.9, int, "expected an integer, got 1.9"),
        (True, int, "expected an integer, got true"),
        ("false", bool, 'expected true or false, got "false"'),
        ("a,b", tuple[str, ...], 'expected a list of strings, got "a,b"'),
        ("x\x00", str, "NUL"),
        (2**70, int, "too large"),
    ],
)
def test_json_values_are_never_converted(value: object, kind: object, message: str) -> None:
    result, issues = from_json(value, kind, path="containerConfig.x")
    assert result is None
    assert issues and message in issues[0][1] and issues[0][0] == "containerConfig.x"


def test_an_integer_is_a_number() -> None:
    assert from_json(2, float, path="x") == (2.0, [])


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("4", int, 4),
        (" -3 ", int, -3),
        ("YES", bool, True),
        ("off", bool, False),
        ("1e3", float, 1000.0),
        ("a, b,,c", tuple[str, ...], ("a", "b", "c")),
        ("fast", Literal["fast", "safe"], "fast"),
        ("python3 -u 'my agent.py'", tuple[str, ...] | None, ("python3", "-u", "my agent.py")),
    ],
)
def test_environment_text_is_parsed_strictly(text: str, kind: object, expected: object) -> None:
    words = kind == tuple[str, ...] | None
    assert from_text(text, kind, words=words) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [("4.0", int), ("0x4", int), ("1_000", int), ("maybe", bool), ("nan", float), ("x", float)],
)
def test_bad_environment_text_is_refused(text: str, kind: type) -> None:
    with pytest.raises(ValueError):
        from_text(text, kind)


# --------------------------------------------------------------------------- precedence


def test_precedence_flag_group_environment_dotenv_default() -> None:
    layers = {
        "overrides": {"cpus": (8, "--cpus")},
        "group": {"cpus": 4},
        "environ": {"S_CPUS": "3"},
        "dotenv": {"S_CPUS": "2"},
    }
    found = resolve(
        Sample,
        sources(layers["group"], layers["environ"], layers["dotenv"]),
        overrides=layers["overrides"],
    )  # type: ignore[arg-type]
    assert found.settings.cpus == 8 and str(found.origins["cpus"]) == "--cpus"  # type: ignore[union-attr]
    found = resolve(Sample, sources({"cpus": 4}, {"S_CPUS": "3"}, {"S_CPUS": "2"}))
    assert found.settings.cpus == 4  # type: ignore[union-attr]
    assert str(found.origins["cpus"]) == "groups/dev/config.json: containerConfig.cpus"
    found = resolve(Sample, sources({"cpus": None}, {"S_CPUS": "3"}, {"S_CPUS": "2"}))
    assert found.settings.cpus == 3 and str(found.origins["cpus"]) == "environment: S_CPUS"  # type: ignore[union-attr]
    found = resolve(Sample, sources(None, {"S_CPUS": ""}, {"S_CPUS": "2"}))
    assert found.settings.cpus == 2 and str(found.origins["cpus"]) == ".env: S_CPUS"  # type: ignore[union-attr]
    found = resolve(Sample, sources())
    assert found.settings.cpus == 2 and str(found.origins["cpus"]) == "default"  # type: ignore[union-attr]
    assert not found.problems


def test_a_setting_without_a_key_ignores_the_group() -> None:
    found = resolve(Sample, sources({"hidden": "from-group"}, {"S_HIDDEN": "from-env"}))
    assert found.settings.hidden == "from-env"  # type: ignore[union-attr]


def test_every_problem_of_every_source_is_reported_with_its_place() -> None:
    found = resolve(
        Sample,
        sources(
            {"cpus": "four", "mode": "quick", "tags": [1]},
            {"S_DEBUG": "maybe", "S_RATIO": "inf"},
            {"S_IMAGE": None},
        ),
    )
    lines = sorted(str(p) for p in found.problems)
    assert lines == sorted(
        [
            'groups/dev/config.json: containerConfig.cpus: expected an integer, got "four"',
            "groups/dev/config.json: containerConfig.mode: expected one of "
            '"fast", "safe", got "quick"',
            "groups/dev/config.json: containerConfig.tags[0]: expected a string, got 1",
            "environment: S_DEBUG: expected a boolean (1/0, true/false, yes/no, on/off), got "
            '"maybe"',
            'environment: S_RATIO: expected a number, got "inf"',
            ".env: S_IMAGE: has no value; write S_IMAGE=VALUE",
        ]
    )
    assert found.settings is not None and found.settings.cpus == 2  # the rest still resolves


def test_a_mistyped_choice_names_the_one_it_most_likely_meant() -> None:
    in_group = resolve(Sample, sources({"mode": "sfae"}))
    assert [str(p) for p in in_group.problems] == [
        'groups/dev/config.json: containerConfig.mode: expected one of "fast", "safe", got '
        '"sfae"; did you mean "safe"?'
    ]
    in_env = resolve(Sample, sources(None, {"S_MODE": "FAST"}))
    assert [str(p) for p in in_env.problems] == [
        'environment: S_MODE: expected one of "fast", "safe", got "FAST"; did you mean "fast"?'
    ]
    unlike = resolve(Sample, sources({"mode": "xyz"}))
    assert [str(p) for p in unlike.problems] == [
        'groups/dev/config.json: containerConfig.mode: expected one of "fast", "safe", got "xyz"'
    ]


def test_validators_name_the_source_and_what_is_allowed() -> None:
    found = resolve(Sample, sources({"cpus": 0}))
    assert [str(p) for p in found.problems] == [
        "groups/dev/config.json: containerConfig.cpus: must be from 1 to 64, got 0"
    ]


def test_env_aliases_are_read_before_the_fields_own_variable() -> None:
    environ = {"CONTAINER_TIMEOUT": "1000", "VIBE_TIMEOUT": "2000"}
    found = resolve(CoreSettings, sources(None, environ), env_aliases={"timeout": "VIBE_TIMEOUT"})
    assert found.settings.timeout == 2000  # type: ignore[union-attr]
    assert str(found.origins["timeout"]) == "environment: VIBE_TIMEOUT"
    found = resolve(
        CoreSettings,
        sources(None, {"CONTAINER_TIMEOUT": "1000"}),
        env_aliases={"timeout": "VIBE_TIMEOUT"},
    )
    assert found.settings.timeout == 1000  # type: ignore[union-attr]


def test_a_command_line_setting_takes_a_list_or_a_string() -> None:
    found = resolve(Sample, sources({"cmd": ["python3", "a b.py"]}))
    assert found.settings.cmd == ("python3", "a b.py")  # type: ignore[union-attr]
    found = resolve(Sample, sources({"cmd": "python3 'a b.py'"}))
    assert found.settings.cmd == ("python3", "a b.py")  # type: ignore[union-attr]
    found = resolve(Sample, sources({"cmd": "python3 'unclosed"}))
    assert "is not a valid command line" in str(found.problems[0])


def test_nested_objects_in_lists_are_built() -> None:
    from nanoclaw_runtimes_core.settings.core import AdditionalMount

    found = resolve(
        CoreSettings,
        sources({"additionalMounts": [{"hostPath": "~/x", "readonly": False}, {"hostPath": "y"}]}),
    )
    assert found.settings.additional_mounts == (  # type: ignore[union-attr]
        AdditionalMount(host_path="~/x", readonly=False),
        AdditionalMount(host_path="y"),
    )
    found = resolve(CoreSettings, sources({"additionalMounts": [{"hostpath": "x"}]}))
    assert [str(p) for p in found.problems] == [
        "groups/dev/config.json: containerConfig.additionalMounts[0].hostpath: unknown key; "
        'did you mean "hostPath"?',
        "groups/dev/config.json: containerConfig.additionalMounts[0].hostPath: missing: a string "
        "is required",
    ]


# --------------------------------------------------------------------------- records


def test_a_settings_class_is_a_frozen_keyword_only_record() -> None:
    s = Sample(cpus=4)
    assert isinstance(s, nc.Record)
    assert s == Sample(cpus=4) and s != Sample(cpus=5)
    with pytest.raises(AttributeError, match="cannot be changed"):
        s.cpus = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="keyword arguments only"):
        Sample(4)  # type: ignore[misc]
    assert [f.name for f in fields_of(Sample)][:3] == ["cpus", "ratio", "debug"]


def test_building_a_settings_class_directly_runs_its_validators() -> None:
    with pytest.raises(ValueError, match="cpus: must be from 1 to 64, got 0"):
        Sample(cpus=0)
    assert Sample(image=None).image is None  # an unset value is not checked


def test_a_settings_class_keeps_its_methods_post_init_and_class_attributes() -> None:
    class Base:
        def describe(self) -> str:
            return "base"

    @nc.settings_class
    class Mine(Base):
        timeout_env = "MINE_TIMEOUT"
        level: int = nc.setting(1, env="MINE_LEVEL", validator=nc.between(1, 9), help="Level.")

        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", True)

        def describe(self) -> str:
            return "mine, " + super().describe()

        @property
        def doubled(self) -> int:
            return self.level * 2

    m = Mine(level=3)
    assert (m.describe(), m.doubled, Mine.timeout_env, m.seen) == (
        "mine, base",
        6,
        "MINE_TIMEOUT",
        True,
    )  # type: ignore[attr-defined]
    assert Mine.__qualname__.endswith("Mine") and Mine.__module__ == __name__
    with pytest.raises(ValueError, match="level: must be from 1 to 9"):
        Mine(level=10)


def test_doctor_json_values_are_json_with_the_keys_as_written() -> None:
    from nanoclaw_runtimes_core.settings.core import AdditionalMount
    from nanoclaw_runtimes_core.settings.values import to_json

    mounts = (AdditionalMount(host_path="~/x", container_path="x", readonly=False),)
    assert to_json(mounts) == [{"hostPath": "~/x", "containerPath": "x", "readonly": False}]
    assert to_json(("a", "b")) == ["a", "b"]
    assert to_json(3) == 3
