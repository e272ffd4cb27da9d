"""Meta-tests: every hook documented and tested; the example plugin installs and passes."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import hookspecs
from nanoclaw_runtimes_core.plugins import HOOK_NAMES
from nanoclaw_runtimes_core.testing import contract, hookdocs

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "writing-a-runtime.md"
EXAMPLE = REPO / "examples" / "nanoclaw-runtime-local"
CONTRACT = Path(contract.__file__)

HOOKS = hookdocs.hook_specs()


def test_the_registry_knows_every_hook() -> None:
    assert tuple(HOOKS) == HOOK_NAMES
    assert set(HOOKS) == {
        name
        for name in dir(hookspecs)
        if hasattr(getattr(hookspecs, name), "nanoclaw_runtimes_spec")
    }


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(HOOKS[hook]) or ""
    summary, _, body = doc.partition("\n\n")
    assert summary.strip(), f"hook {hook} has no docstring"
    assert len(body.split()) >= 20, f"hook {hook}: say when it is called, what to return or raise"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert re.search(rf"^### `{hook}\(", text, re.MULTILINE), (
        f"{DOC.name} has no section for {hook}"
    )


def test_the_hook_reference_matches_the_docstrings() -> None:
    current = hookdocs.current_reference(DOC.read_text(encoding="utf-8"))
    assert current is not None, f"{DOC.name} lost its hook reference markers"
    assert current == hookdocs.render_reference(), (
        f"{DOC.name} is out of date with hookspecs.py; run: "
        f"python -m nanoclaw_runtimes_core.testing.hookdocs docs/writing-a-runtime.md"
    )


def _dispatcher_calls(hook: str) -> re.Pattern[str]:
    # Through the host API (runtimes.execute(...)) or the registry (registry.call(name, "execute")).
    return re.compile(rf"\.{hook}\(|\.call\(\s*[^,()]+,\s*[\"']{hook}[\"']")


def _sources(*roots: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for root in roots for p in sorted(root.rglob("*.py"))}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_the_contract_suite(hook: str) -> None:
    pattern = _dispatcher_calls(hook)
    assert pattern.search(CONTRACT.read_text(encoding="utf-8")), (
        f"the contract suite never calls {hook} through the dispatcher"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    pattern = _dispatcher_calls(hook)
    callers = [
        path.relative_to(REPO).as_posix()
        for path, text in _sources(REPO / "tests").items()
        if "def test_" in text and pattern.search(text)
    ]
    assert callers, f"no test under tests/ calls {hook} through the dispatcher"


@pytest.mark.parametrize(
    "name",
    [
        "pyproject.toml",
        "nanoclaw_runtime_local/plugin.py",
        "tests/conftest.py",
        "tests/test_contract.py",
    ],
)
def test_the_docs_show_the_example_plugin_as_it_is(name: str) -> None:
    source = (EXAMPLE / name).read_text(encoding="utf-8").rstrip("\n")
    assert source in DOC.read_text(encoding="utf-8"), (
        f"{DOC.name} shows an outdated copy of examples/nanoclaw-runtime-local/{name}"
    )


# --------------------------------------------------------------------------- the real install


def _run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOCLAW_", "CONTAINER_"))}
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave nothing in the example's folder
    env["NANOCLAW_MOUNT_ALLOWLIST"] = str(venv.parent / "no-allowlist.json")
    return env


@pytest.mark.slow
def test_the_example_plugin_installs_with_pip_and_passes_the_contract(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # System site packages provide the core and its dependencies, as installed for these tests.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = str(venv / "bin" / "python")
    env = _venv_env(venv)
    installed = _run(
        [python, "-m", "pip", "install", "--quiet", str(EXAMPLE)], cwd=tmp_path, env=env
    )
    assert installed.returncode == 0, installed.stderr

    where = _run(
        [python, "-c", "import nanoclaw_runtime_local; print(nanoclaw_runtime_local.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), f"not the venv's copy: {where.stdout}"

    root = tmp_path / "project"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "dev").mkdir()
    (root / "groups" / "dev" / "config.json").write_text(
        json.dumps({"containerConfig": {"runtime": "local"}})
    )
    cli = [python, "-m", "nanoclaw_runtimes_core", "--root", str(root)]

    listed = _run([*cli, "plugins", "--json"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["local"]["distribution"] == "nanoclaw-runtime-local"
    assert rows["local"]["available"] is True
    assert set(rows["local"]["hooks"]) == set(HOOK_NAMES)

    ran = _run([*cli, "run", "dev", "--", "sh", "-c", "pwd; exit 5"], cwd=tmp_path, env=env)
    assert ran.returncode == 5, ran.stderr
    assert Path(ran.stdout.strip()).resolve() == (root / "groups" / "dev").resolve()

    request = {"prompt": "hello local", "groupFolder": "dev", "chatJid": "x@g.us", "isMain": False}
    answered = _run([*cli, "run", "dev"], cwd=tmp_path, env=env, stdin=json.dumps(request))
    assert answered.returncode == 0, answered.stderr
    assert "---NANOCLAW_OUTPUT_START---" in answered.stdout
    assert "You said: 'hello local'" in answered.stdout
    logs = sorted((root / "groups" / "dev" / "logs").glob("container-*.log"))
    assert logs and "Runtime: local\n" in logs[-1].read_text()

    suite = _run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestAssertRewriteWarning",
        ],
        cwd=EXAMPLE,
        env=env,
    )
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    summary = suite.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1[5-9] passed\b|\b[2-9]\d passed\b", summary), summary
    assert "failed" not in summary and "error" not in summary, summary
