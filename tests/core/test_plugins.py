"""The plugin registry: loading from entry points, refusing bad plugins, calling ONE runtime."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nanoclaw_runtimes_core import cli, hookimpl, plugins
from nanoclaw_runtimes_core.errors import (
    ExitStatus,
    PluginError,
    RuntimeFailure,
    RuntimeNotFound,
    UserError,
)
from nanoclaw_runtimes_core.models import ExecutionResult, StatsRow
from nanoclaw_runtimes_core.plugins import LOAD_ENV, Registry, default_registry

if TYPE_CHECKING:  # pytest imports it as a plugin; importing it first would skip its rewrite
    from nanoclaw_runtimes_core.testing import NanoclawProject


# --------------------------------------------------------------------------- fake installs


class Site:
    """A folder on sys.path holding fake installed distributions (dist-info + module)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def install(self, distribution: str, runtimes: dict[str, str]) -> dict[str, str]:
        """Install ``distribution`` declaring one runtime per ``name: module source``.

        Returns ``name -> module name``; module names are unique per call so that
        no test sees a module another test imported.
        """
        modules = {name: f"fake_{name}_{uuid.uuid4().hex[:8]}" for name in runtimes}
        for name, source in runtimes.items():
            (self.path / f"{modules[name]}.py").write_text(textwrap.dedent(source))
        info = self.path / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        )
        lines = ["[nanoclaw_runtimes]"] + [f"{n} = {m}" for n, m in modules.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        return modules


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    # The process-wide registry must not leak between tests.
    monkeypatch.setattr(plugins, "_default", None)
    return Site(path)


WORKING = """
    from nanoclaw_runtimes_core import hookimpl
    from nanoclaw_runtimes_core.models import ExecutionResult

    @hookimpl
    def execute(request):
        return ExecutionResult(exit_code=0)
"""

MISSPELLED = """
    from nanoclaw_runtimes_core import hookimpl

    @hookimpl
    def exectue(request):
        return None
"""

RAISING = """
    from nanoclaw_runtimes_core import hookimpl

    @hookimpl
    def execute(request):
        raise RuntimeError("kaboom in the engine")
"""

BROKEN_IMPORT = """
    import nanoclaw_no_such_module_anywhere
"""


class Recording:
    """An in-process runtime that records every hook call it receives."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    @hookimpl
    def prepare(self, request: Any) -> None:
        self.log.append((self.name, "prepare"))

    @hookimpl
    def execute(self, request: Any) -> ExecutionResult:
        self.log.append((self.name, "execute"))
        return ExecutionResult(exit_code=0)

    @hookimpl
    def reset(self, request: Any) -> list[str]:
        self.log.append((self.name, "reset"))
        return [self.name]

    @hookimpl
    def stats(self, request: Any) -> list[StatsRow]:
        self.log.append((self.name, "stats"))
        return [StatsRow(group=None, kind=self.name)]


def _runtimes(project: NanoclawProject, registry: Registry) -> Any:
    from nanoclaw_runtimes_core.api import Runtimes

    return Runtimes(
        project.root,
        environ={"NANOCLAW_MOUNT_ALLOWLIST": str(project.allowlist_path)},
        registry=registry,
    )


# --------------------------------------------------------------------------- loading


def test_entry_point_runtime_loads_with_its_distribution(site: Site) -> None:
    modules = site.install("nanoclaw-runtime-fakeok", {"fakeok": WORKING})
    registry = Registry()
    registry.load_entry_points(["fakeok"])
    info = registry.get("fakeok")
    assert (info.distribution, info.version, info.module) == (
        "nanoclaw-runtime-fakeok",
        "1.0",
        modules["fakeok"],
    )
    assert info.hooks == ("execute",)
    assert info.settings_class is None


def test_misspelled_hook_fails_at_load_naming_the_runtime(site: Site) -> None:
    site.install("nanoclaw-runtime-typo", {"typo": MISSPELLED})
    registry = Registry()
    registry.load_entry_points(["typo"])  # metadata only: modules load on first use
    with pytest.raises(PluginError) as info:
        registry.get("typo")
    text = str(info.value)
    assert "'typo'" in text and "nanoclaw-runtime-typo" in text and "exectue" in text


def test_misspelled_hook_in_process_fails_and_leaves_nothing_registered() -> None:
    class Typo:
        @hookimpl
        def engine_stats(self, settings: Any) -> None: ...

    registry = Registry()
    with pytest.raises(PluginError, match=r"runtime 'typo'.*engine_stats"):
        registry.register("typo", Typo())
    assert registry.names() == []
    assert registry.pm.get_plugins() == set()


def test_two_distributions_claiming_one_runtime_name_are_both_named(site: Site) -> None:
    site.install("nanoclaw-runtime-dupone", {"dupname": WORKING})
    site.install("nanoclaw-runtime-duptwo", {"dupname": WORKING})
    with pytest.raises(PluginError) as info:
        Registry().load_entry_points(["dupname"])
    text = str(info.value)
    assert "'dupname'" in text
    assert "nanoclaw-runtime-dupone" in text and "nanoclaw-runtime-duptwo" in text


def test_a_second_in_process_claim_of_a_name_is_refused() -> None:
    registry = Registry()
    registry.register("twice", Recording("a", []), distribution="dist-a")
    with pytest.raises(PluginError, match=r"'twice' is claimed twice: by dist-a .* by dist-b"):
        registry.register("twice", Recording("b", []), distribution="dist-b")


def test_load_env_restricts_which_runtimes_load(site: Site) -> None:
    site.install("nanoclaw-runtime-fakea", {"fakea": WORKING})
    site.install("nanoclaw-runtime-fakeb", {"fakeb": WORKING})
    site.install("nanoclaw-runtime-fakebroken", {"fakebroken": BROKEN_IMPORT})

    # The broken one fails when it is loaded, and says how to get past it; the others still load.
    unrestricted = Registry()
    unrestricted.load_entry_points(["fakea", "fakeb", "fakebroken"])
    assert unrestricted.get("fakea").name == "fakea"
    with pytest.raises(PluginError) as info:
        unrestricted.infos()
    text = str(info.value)
    assert "'fakebroken'" in text and "nanoclaw-runtime-fakebroken" in text
    assert LOAD_ENV in text

    registry = default_registry({LOAD_ENV: "fakea, fakeb"})
    assert registry.names() == ["fakea", "fakeb"]
    assert default_registry({}) is registry  # loaded once, then reused

    plugins._default = None
    assert default_registry({LOAD_ENV: ""}).names() == []


# --------------------------------------------------------------------------- calling


def test_an_exception_in_a_hook_names_the_runtime_and_distribution(
    site: Site, nanoclaw_project: NanoclawProject
) -> None:
    site.install("nanoclaw-runtime-boom", {"boom": RAISING})
    registry = Registry()
    registry.load_entry_points(["boom"])
    nanoclaw_project.group("dev", {"runtime": "boom"})
    with pytest.raises(RuntimeFailure) as info:
        _runtimes(nanoclaw_project, registry).execute("dev", command=["true"])
    failure = info.value
    assert (failure.runtime, failure.distribution, failure.hook) == (
        "boom",
        "nanoclaw-runtime-boom",
        "execute",
    )
    assert isinstance(failure.cause, RuntimeError)
    text = str(failure)
    assert "'boom'" in text and "nanoclaw-runtime-boom" in text and "kaboom in the engine" in text


def test_the_cli_reports_a_hook_exception_with_runtime_and_distribution(
    site: Site,
    nanoclaw_project: NanoclawProject,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site.install("nanoclaw-runtime-boom", {"boom": RAISING})
    monkeypatch.setenv(LOAD_ENV, "boom")
    nanoclaw_project.group("dev", {"runtime": "boom"})
    status = cli.main(["--root", str(nanoclaw_project.root), "run", "dev", "--", "true"])
    err = capsys.readouterr().err
    assert status == ExitStatus.RUN_FAILED
    assert "'boom'" in err and "nanoclaw-runtime-boom" in err and "kaboom in the engine" in err
    assert "Traceback" not in err


def test_a_user_error_from_a_hook_passes_through_unwrapped() -> None:
    class Picky:
        @hookimpl
        def execute(self, request: Any) -> None:
            raise UserError("base image missing: run `nanoclaw-runtimes prepare --base picky`")

    registry = Registry()
    registry.register("picky", Picky())
    with pytest.raises(UserError, match="prepare --base picky") as info:
        registry.call("picky", "execute", request=None)
    assert not isinstance(info.value, RuntimeFailure)


def test_only_the_selected_runtime_is_called(nanoclaw_project: NanoclawProject) -> None:
    log: list[tuple[str, str]] = []
    registry = Registry()
    for name in ("alpha", "beta", "gamma"):
        registry.register(name, Recording(name, log))
    nanoclaw_project.group("on-beta", {"runtime": "beta"})
    nanoclaw_project.group("on-alpha", {"runtime": "alpha"})
    runtimes = _runtimes(nanoclaw_project, registry)

    runtimes.execute("on-beta", command=["true"])
    assert log == [("beta", "prepare"), ("beta", "execute")]
    log.clear()
    assert runtimes.reset("on-alpha") == ["alpha"]
    assert log == [("alpha", "reset")]
    log.clear()
    assert [r.kind for r in runtimes.stats(["gamma"])] == ["gamma"]
    assert log == [("gamma", "stats")]


def test_a_runtime_registered_later_is_not_called_for_another() -> None:
    log: list[tuple[str, str]] = []
    registry = Registry()
    registry.register("alpha", Recording("alpha", log))
    registry.call("alpha", "execute", request=None)
    registry.register("beta", Recording("beta", log))
    log.clear()
    registry.call("alpha", "execute", request=None)
    assert log == [("alpha", "execute")]


def test_a_wrong_return_type_from_execute_is_reported(nanoclaw_project: NanoclawProject) -> None:
    class Sloppy:
        @hookimpl
        def execute(self, request: Any) -> dict[str, int]:
            return {"exit_code": 0}

    registry = Registry()
    registry.register("sloppy", Sloppy())
    nanoclaw_project.group("dev", {"runtime": "sloppy"})
    with pytest.raises(UserError, match=r"'sloppy' returned dict from execute"):
        _runtimes(nanoclaw_project, registry).execute("dev", command=["true"])


# --------------------------------------------------------------------------- unknown names


def test_unknown_runtime_lists_installed_suggests_and_gives_the_pip_command(
    nanoclaw_project: NanoclawProject,
) -> None:
    registry = Registry()
    for name in ("alpha", "container"):
        registry.register(name, Recording(name, []))

    with pytest.raises(RuntimeNotFound) as info:
        registry.get("contaner")
    text = str(info.value)
    assert "unknown runtime 'contaner'" in text
    assert "installed runtimes: alpha, container" in text
    assert "did you mean 'container'?" in text
    assert "pip install" not in text  # not a runtime we know a distribution of

    with pytest.raises(RuntimeNotFound) as info:
        registry.get("vibe")
    assert "pip install nanoclaw-runtime-vibe" in str(info.value)

    # Through the dispatcher, the message also says where the name came from.
    nanoclaw_project.group("dev", {"runtime": "tartt"})
    with pytest.raises(RuntimeNotFound) as info:
        _runtimes(nanoclaw_project, registry).execute("dev", command=["true"])
    text = str(info.value)
    assert "groups/dev/config.json: containerConfig.runtime" in text
    assert "did you mean 'tart'?" in text
    assert info.value.exit_status == ExitStatus.CONFIG


def test_plugins_json_lists_entry_point_runtimes(
    site: Site,
    nanoclaw_project: NanoclawProject,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site.install("nanoclaw-runtime-fakeok", {"fakeok": WORKING})
    monkeypatch.setenv(LOAD_ENV, "fakeok")
    assert cli.main(["--root", str(nanoclaw_project.root), "plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["distribution"], r["version"], r["hooks"]) for r in rows] == [
        ("fakeok", "nanoclaw-runtime-fakeok", "1.0", ["execute"])
    ]


def test_runtime_settings_are_loaded_once_and_resolved_for_each_group(
    nanoclaw_project: NanoclawProject,
) -> None:
    import attrs

    from nanoclaw_runtimes_core.settings import positive, setting

    @attrs.define(frozen=True, kw_only=True)
    class DialSettings:
        level: int = setting(1, env="DIAL_LEVEL", key="dialLevel", validator=positive, help="x")

    seen: list[Any] = []

    class Dial:
        declared = 0

        @hookimpl
        def runtime_settings(self) -> type:
            Dial.declared += 1
            return DialSettings

        @hookimpl
        def execute(self, request: Any) -> ExecutionResult:
            seen.append(request.settings)
            return ExecutionResult(exit_code=0)

    registry = Registry()
    info = registry.register("dial", Dial())
    assert info.settings_class is DialSettings and Dial.declared == 1
    assert registry.call("dial", "runtime_settings") is DialSettings

    nanoclaw_project.group("loud", {"runtime": "dial", "dialLevel": 7})
    nanoclaw_project.group("quiet", {"runtime": "dial"})
    runtimes = _runtimes(nanoclaw_project, registry)
    runtimes.execute("loud", command=["true"])
    runtimes.execute("quiet", command=["true"])
    assert seen == [DialSettings(level=7), DialSettings(level=1)]

    nanoclaw_project.write_config("quiet", {"runtime": "dial", "dialLevel": 0})
    with pytest.raises(UserError, match=r"groups/quiet/config.json: containerConfig.dialLevel"):
        runtimes.execute("quiet", command=["true"])
