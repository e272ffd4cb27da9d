"""The run path does only what the run needs: hooks called directly, a plain ``run`` parsed
without argparse, no engine probed for a group that names its runtime, and helpers that
answer as the standard library's heavier modules would."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core import cli
from nanoclaw_runtimes_core.plugins import Registry
from nanoclaw_runtimes_core.process import find_program
from nanoclaw_runtimes_core.runlog import _iso
from nanoclaw_runtimes_core.safefs import remove_tree
from nanoclaw_runtimes_core.testing import NanoclawProject


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


PLAIN = """
import nanoclaw_runtimes_core as nc

@nc.hookimpl
def engine_status(settings):
    return nc.EngineStatus(available=True, engine="plain")

@nc.hookimpl
def execute(request, unused="never passed"):
    return nc.ExecutionResult(exit_code=0, error=None if unused == "never passed" else unused)
"""


# --------------------------------------------------------------------------- hooks


def test_a_module_of_plain_hooks_is_called_without_pluggy() -> None:
    registry = Registry()
    info = registry.register("plain", _module("plain", PLAIN))
    assert info.hooks == ("engine_status", "execute")
    result = registry.call("plain", "execute", request=None)
    assert result.exit_code == 0 and result.error is None  # a defaulted argument is not passed
    assert registry.call("plain", "engine_status", settings=None).engine == "plain"
    assert registry.call("plain", "reset", request=None) is None  # not implemented
    assert registry._pm is None


def test_an_unmarked_method_in_the_module_keeps_the_direct_path() -> None:
    source = (
        PLAIN
        + "\nclass Helper:\n    def method(self):\n        return 1\n\nhelper = Helper().method\n"
    )
    registry = Registry()
    registry.register("plain", _module("plain", source))
    assert registry.call("plain", "execute", request=None).exit_code == 0
    assert registry._pm is None


def test_objects_and_wrappers_are_registered_with_pluggy_and_called_alike() -> None:
    class Obj:
        @nc.hookimpl
        def execute(self, request: Any) -> nc.ExecutionResult:
            return nc.ExecutionResult(exit_code=3)

    wrapped = _module(
        "wrapped",
        PLAIN + "\n@nc.hookimpl(tryfirst=True, specname='reset')\ndef other(request):\n"
        "    return ['x']\n",
    )
    registry = Registry()
    registry.register("obj", Obj())
    registry.register("wrapped", wrapped)
    registry.register("plain", _module("plain", PLAIN))
    assert registry._pm is not None
    assert registry.call("obj", "execute", request=None).exit_code == 3
    assert registry.call("wrapped", "reset", request=None) == ["x"]
    assert registry.call("plain", "execute", request=None).exit_code == 0
    assert registry.get("wrapped").hooks == ("engine_status", "execute", "reset")


def test_an_exception_in_a_direct_hook_names_the_runtime() -> None:
    failing = _module(
        "failing",
        "import nanoclaw_runtimes_core as nc\n@nc.hookimpl\ndef execute(request):\n"
        "    raise KeyError('boom')\n",
    )
    registry = Registry()
    registry.register("mine", failing, distribution="nanoclaw-runtime-mine")
    with pytest.raises(nc.RuntimeFailure) as err:
        registry.call("mine", "execute", request=None)
    assert "mine" in str(err.value) and "nanoclaw-runtime-mine" in str(err.value)


def test_the_marker_sets_what_pluggy_reads() -> None:
    import pluggy

    def f() -> None: ...

    def g() -> None: ...

    nc.hookimpl(f)
    pluggy.HookimplMarker(nc.PROJECT_NAME)(g)
    assert f.nanoclaw_runtimes_impl == g.nanoclaw_runtimes_impl  # type: ignore[attr-defined]


def test_the_spec_marker_sets_what_pluggy_reads() -> None:
    import pluggy

    def f() -> None: ...

    def g() -> None: ...

    nc.hookspec(f, firstresult=True)
    pluggy.HookspecMarker(nc.PROJECT_NAME)(g, firstresult=True)
    assert f.nanoclaw_runtimes_spec == g.nanoclaw_runtimes_spec  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- runtime choice


PROBED = """
import nanoclaw_runtimes_core as nc
CALLS = []

@nc.hookimpl
def engine_status(settings):
    CALLS.append("engine_status")
    return nc.EngineStatus(available=True, engine="probed")

@nc.hookimpl
def execute(request):
    CALLS.append("execute")
    return nc.ExecutionResult(exit_code=0)
"""


def test_a_group_that_names_its_runtime_never_probes_another(
    project: NanoclawProject, environ: dict[str, str]
) -> None:
    registry = Registry()
    named = _module("named", PROBED)
    other = _module("other", PROBED)
    registry.register("named", named)
    registry.register("other", other)
    project.group("dev", {"runtime": "named"})
    rt = nc.Runtimes(
        project.root,
        environ=environ,
        registry=registry,
    )
    result = rt.execute("dev", command=["true"])
    assert result.exit_code == 0
    assert named.CALLS == ["execute"]  # no engine_status either: the plan does not ask
    assert other.CALLS == []


def test_auto_detection_stops_at_the_first_usable_runtime(
    project: NanoclawProject, environ: dict[str, str]
) -> None:
    registry = Registry()
    first, second = _module("first", PROBED), _module("second", PROBED)
    registry.register("container", first)
    registry.register("zzz", second)
    project.group("dev", {})
    rt = nc.Runtimes(
        project.root,
        environ=environ,
        registry=registry,
    )
    assert rt.plan("dev").runtime == "container"
    assert first.CALLS == ["engine_status"] and second.CALLS == []


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "words",
    [
        ["run", "dev"],
        ["run", "dev", "--runtime", "container"],
        ["run", "--timeout", "5000", "dev"],
        ["run", "dev", "--name", "n1", "--timeout", "1", "--runtime", "vibe"],
        ["--root", "/some/where", "run", "dev"],
        ["run", "--runtime", "x", "dev", "--name", "a.b_c"],
    ],
)
def test_a_plain_run_is_parsed_as_argparse_parses_it(words: list[str]) -> None:
    fast = cli._plain_run(words)
    assert fast is not None
    full = cli._parser("run").parse_args(words)
    assert vars(fast) == vars(full)


@pytest.mark.parametrize(
    "words",
    [
        ["run"],  # no group: argparse says so
        ["run", "dev", "other"],
        ["run", "--runtime=x", "dev"],
        ["run", "--run", "x", "dev"],  # an abbreviation argparse would accept
        ["run", "dev", "--timeout", "0"],
        ["run", "dev", "--timeout", "-5"],
        ["run", "dev", "--name", "a", "--name", "b"],
        ["run", "dev", "--name"],
        ["run", "-h"],
        ["run", ""],
        ["--root", "run", "dev"],
        ["--root=/x", "run", "dev"],
        ["prepare", "dev"],
    ],
)
def test_anything_else_is_left_to_argparse(words: list[str]) -> None:
    assert cli._plain_run(words) is None


def test_a_bad_timeout_still_gets_argparse_s_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "dev", "--timeout", "0"])
    assert done.value.code == 2
    assert "expected milliseconds from 1 to 2147483647, got '0'" in capsys.readouterr().err


# --------------------------------------------------------------------------- helpers


def test_find_program_answers_as_shutil_which(tmp_path: Path) -> None:
    run = tmp_path / "bin" / "tool"
    run.parent.mkdir()
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    (tmp_path / "bin" / "plain").write_text("not executable")
    (tmp_path / "bin" / "folder").mkdir(mode=0o755)
    path = os.pathsep.join([str(tmp_path / "missing"), str(tmp_path / "bin"), "/usr/bin"])
    for name in ("tool", "plain", "folder", "sh", "nope", str(run), str(tmp_path / "bin/plain")):
        assert find_program(name, path=path) == shutil.which(name, path=path), name
    assert find_program("sh", path="") is None


def test_a_flat_folder_is_removed_without_following_a_link(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("stays")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "link").symlink_to(kept)
    (run / "file-link").symlink_to(kept / "file")
    assert remove_tree(run)
    assert not run.exists()
    assert (kept / "file").read_text() == "stays"


def test_a_nested_folder_is_still_removed_whole(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_text("x")
    (top / "g").write_text("y")
    assert remove_tree(top)
    assert not top.exists()
    assert not remove_tree(top)


def test_run_log_times_are_utc_milliseconds_as_datetime_writes_them() -> None:
    now = time.time_ns()
    expected = (
        datetime.fromtimestamp(now // 10**9, timezone.utc)
        .replace(microsecond=(now % 10**9) // 1000)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    assert _iso(now) == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", _iso(now))
    assert _iso(0) == "1970-01-01T00:00:00.000Z"


def test_parser_still_builds_every_subcommand() -> None:
    parser = cli._parser()
    assert isinstance(parser, argparse.ArgumentParser)
    assert parser.parse_args(["doctor", "--json"]).json is True
