"""Meta-tests: every hook documented and exercised by the contract suite, the generated parts of
the docs up to date, the docs showing the example runtime as it is."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import hookspecs
from nanoclaw_runtimes_core.plugins import HOOK_NAMES
from nanoclaw_runtimes_core.settings import schema
from nanoclaw_runtimes_core.testing import contract, hookdocs

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "writing-a-runtime.md"
CONFIGURATION = REPO / "docs" / "configuration.md"
UNSHARE = REPO / "examples" / "nanoclaw-runtime-unshare"
CONTRACT = Path(contract.__file__)
HOOKS = hookdocs.hook_specs()


def test_the_registry_knows_every_hook() -> None:
    assert tuple(HOOKS) == HOOK_NAMES
    marked = {n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "nanoclaw_runtimes_spec")}
    assert set(HOOKS) == marked


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_that_says_when_and_what(hook: str) -> None:
    doc = inspect.getdoc(HOOKS[hook]) or ""
    summary, _, body = doc.partition("\n\n")
    assert summary.strip(), f"hook {hook} has no docstring"
    assert len(body.split()) >= 20, f"hook {hook}: say when it is called, what to return or raise"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    assert re.search(rf"^### `{hook}\(", GUIDE.read_text(), re.MULTILINE), (
        f"{GUIDE.name} has no section for {hook}"
    )


def test_the_hook_reference_matches_the_docstrings() -> None:
    current = hookdocs.current_reference(GUIDE.read_text(encoding="utf-8"))
    assert current is not None, f"{GUIDE.name} lost its hook reference markers"
    assert current == hookdocs.render_reference(), (
        f"{GUIDE.name} is out of date with hookspecs.py; run: "
        "python -m nanoclaw_runtimes_core.testing.hookdocs docs/writing-a-runtime.md"
    )


def _dispatcher_calls(hook: str) -> re.Pattern[str]:
    # Through the host API (runtimes.execute(...)) or the registry (registry.call(name, "x")).
    return re.compile(rf"runtimes\.{hook}\(|\.call\(\s*[^,()]+,\s*[\"']{hook}[\"']")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_the_contract_suite(hook: str) -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    tests = {
        node.name: ast.get_source_segment(text, node) or ""
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    callers = [name for name, source in tests.items() if _dispatcher_calls(hook).search(source)]
    if hook == "execute":  # every run goes through the harness's execute
        assert "self.runtimes.execute(" in text
        callers = [name for name, source in tests.items() if "contract.run(" in source]
    assert callers, f"no contract test calls {hook} through the dispatcher"


def test_the_settings_reference_is_up_to_date() -> None:
    document = CONFIGURATION.read_text(encoding="utf-8")
    assert schema.BEGIN in document and schema.END in document, "the reference markers are gone"
    runtimes = schema.installed_runtime_settings()
    assert schema.render_into(document, runtimes) == document, (
        f"the settings reference in {CONFIGURATION.name} is out of date (installed runtimes: "
        f"{', '.join(sorted(runtimes))}); run: "
        "python -m nanoclaw_runtimes_core.settings.schema docs/configuration.md"
    )


@pytest.mark.parametrize(
    "name",
    ["nanoclaw_runtime_unshare/plugin.py", "pyproject.toml", "tests/test_unshare_contract.py"],
)
def test_the_guide_shows_the_example_runtime_as_it_is(name: str) -> None:
    source = (UNSHARE / name).read_text(encoding="utf-8").rstrip("\n")
    assert source in GUIDE.read_text(encoding="utf-8"), (
        f"{GUIDE.name} shows an outdated copy of examples/nanoclaw-runtime-unshare/{name}"
    )


def test_the_unshare_runtime_is_small_and_imports_only_the_core() -> None:
    source = (UNSHARE / "nanoclaw_runtime_unshare" / "plugin.py").read_text()
    assert len(source.splitlines()) < 50
    imports = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert [ast.unparse(node) for node in imports] == ["import nanoclaw_runtimes_core as nc"]
