"""The registry and the mistakes a runtime author makes, each with a message that says the fix."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.entrypoints import Distribution, RuntimeEntryPoint
from nanoclaw_runtimes_core.plugins import Registry
from nanoclaw_runtimes_core.testing import NanoclawProject


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


GOOD = """
import nanoclaw_runtimes_core as nc

@nc.hookimpl
def execute(request):
    return nc.ExecutionResult(exit_code=0)
"""


def test_a_hook_without_hookimpl() -> None:
    plugin = _module("unmarked", GOOD + "\ndef reset(request):\n    return []\n")
    with pytest.raises(nc.PluginError) as err:
        Registry().register("mine", plugin, distribution="nanoclaw-runtime-mine")
    assert str(err.value) == (
        "runtime 'mine' (from nanoclaw-runtime-mine): reset is not marked with @hookimpl; "
        "decorate each hook with @nanoclaw_runtimes_core.hookimpl"
    )


def test_a_wrongly_named_argument_says_it_must_be_called_request() -> None:
    plugin = _module(
        "misnamed",
        "import nanoclaw_runtimes_core as nc\n@nc.hookimpl\ndef execute(req):\n    pass\n",
    )
    with pytest.raises(nc.PluginError) as err:
        Registry().register("mine", plugin, distribution="dist")
    message = str(err.value)
    assert "execute(req) has an argument the hook does not pass" in message
    assert message.endswith("must be named as in the hookspec: execute(request)")


def test_a_misspelled_hook_name_is_suggested() -> None:
    plugin = _module("typo", GOOD + "\n@nc.hookimpl\ndef engine_stats(settings):\n    pass\n")
    with pytest.raises(nc.PluginError, match="'engine_stats', which is not a hook; did you mean"):
        Registry().register("mine", plugin)


def test_a_runtime_without_execute() -> None:
    plugin = _module(
        "noexec",
        "import nanoclaw_runtimes_core as nc\n@nc.hookimpl\ndef reset(request):\n  return []\n",
    )
    with pytest.raises(nc.PluginError) as err:
        Registry().register("mine", plugin, distribution="dist")
    assert str(err.value) == (
        "runtime 'mine' (from dist) implements no execute hook; "
        "add `@hookimpl def execute(request)`"
    )


def test_a_settings_field_without_annotation() -> None:
    plugin = _module(
        "unannotated",
        GOOD
        + """
@nc.settings_class
class Settings:
    cpus = nc.setting(2, env="MINE_CPUS", help="CPUs.")

@nc.hookimpl
def runtime_settings():
    return Settings
""",
    )
    with pytest.raises(nc.PluginError) as err:
        Registry().register("mine", plugin, distribution="dist")
    assert "runtime 'mine' (from dist): Settings.cpus has no type annotation; write" in str(
        err.value
    )


def test_execute_returning_the_wrong_type_fails_the_run_naming_runtime_and_fix(
    project: NanoclawProject, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanoclaw_runtimes_core import cli, plugins

    plugin = _module(
        "wrongtype",
        "import nanoclaw_runtimes_core as nc\n@nc.hookimpl\ndef execute(request):\n  return 0\n",
    )
    registry = Registry()
    registry.register("mine", plugin, distribution="nanoclaw-runtime-mine")
    monkeypatch.setattr(plugins, "_default", registry)
    project.group("dev", {"runtime": "mine"})
    code = cli.main(["--root", str(project.root), "run", "dev", "--", "true"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "runtime 'mine' (from nanoclaw-runtime-mine) failed in execute: TypeError: returned int; "
        "execute must return an ExecutionResult (run_process returns one)"
    ) in err


def test_a_name_claimed_twice_and_a_broken_plugin_do_not_hide_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nanoclaw_runtimes_core import entrypoints

    sys.modules["good_runtime_for_tests"] = _module("good_runtime_for_tests", GOOD)
    found = [
        RuntimeEntryPoint("good", "good_runtime_for_tests", Distribution("nc-good", "1")),
        RuntimeEntryPoint("broken", "no_such_module_for_tests", Distribution("nc-broken", "2")),
        RuntimeEntryPoint("twice", "good_runtime_for_tests", Distribution("nc-a", "1")),
        RuntimeEntryPoint("twice", "good_runtime_for_tests", Distribution("nc-b", "1")),
    ]
    monkeypatch.setattr(entrypoints, "runtime_entry_points", lambda **_: found)
    registry = Registry()
    registry.load_entry_points()
    infos = {i.name: i for i in registry.infos()}
    assert infos["good"].error is None and infos["good"].distribution == "nc-good"
    assert "failed to load no_such_module_for_tests: ModuleNotFoundError" in (
        infos["broken"].error or ""
    )
    assert "is claimed by two distributions: nc-a" in (infos["twice"].error or "")
    with pytest.raises(nc.PluginError, match="reinstall nc-broken"):
        registry.get("broken")
    with pytest.raises(nc.ConfigError) as err:
        registry.get("vibe")
    assert "install it with: pip install nanoclaw-runtime-vibe" in str(err.value)
    del sys.modules["good_runtime_for_tests"]


def test_hooks_are_called_on_one_runtime_only() -> None:
    calls: list[str] = []

    class Rt:
        def __init__(self, name: str) -> None:
            self.name = name

        @nc.hookimpl
        def execute(self, request: Any) -> nc.ExecutionResult:
            calls.append(self.name)
            return nc.ExecutionResult(exit_code=0)

    registry = Registry()
    registry.register("a", Rt("a"))
    registry.register("b", Rt("b"))
    registry.call("b", "execute", request=None)
    assert calls == ["b"]
    with pytest.raises(nc.PluginError, match="the same plugin object is already registered"):
        plugin = Rt("c")
        registry.register("c", plugin)
        registry.register("d", plugin)
