"""The example runtimes install with pip into a FRESH virtual environment that gets the core from
this repository, work through the command line, and pass their own contract suites there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "unshare": REPO / "examples" / "nanoclaw-runtime-unshare",
    "local": REPO / "examples" / "nanoclaw-runtime-local",
}
pytestmark = pytest.mark.slow


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOCLAW_", "CONTAINER_"))}
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave nothing in the examples' folders
    env["NANOCLAW_MOUNT_ALLOWLIST"] = str(venv.parent / "no-allowlist.json")
    return env


def _run(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    # A folder every user may traverse: the sandbox user runs this venv's Python (local).
    base = Path(tempfile.mkdtemp(prefix="nanoclaw-venv-"))
    os.chmod(base, 0o755)
    venv = base / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        python = str(venv / "bin" / "python")
        installed = _run(
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                str(REPO),
                *map(str, EXAMPLES.values()),
                "pytest",
            ],
            env=_env(venv),
            cwd=base,
        )
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        yield venv
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_core_and_the_examples_come_from_the_fresh_venv(venv: Path) -> None:
    python = str(venv / "bin" / "python")
    code = (
        "import nanoclaw_runtimes_core, nanoclaw_runtime_unshare, nanoclaw_runtime_local; "
        "print(nanoclaw_runtimes_core.__file__); print(nanoclaw_runtime_unshare.__file__)"
    )
    where = _run([python, "-c", code], env=_env(venv), cwd=venv.parent)
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv), f"not the venv's copy: {line}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_works_from_the_command_line(venv: Path, name: str) -> None:
    env = _env(venv)
    root = venv.parent / f"project-{name}"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "dev").mkdir()
    (root / "groups" / "dev" / "config.json").write_text(
        json.dumps({"containerConfig": {"runtime": name}})
    )
    for folder in (root, root / "groups", root / "groups" / "global", root / "groups" / "dev"):
        os.chmod(folder, 0o755)
    cli = [str(venv / "bin" / "nanoclaw-runtimes"), "--root", str(root)]
    listed = _run([*cli, "plugins", "--json"], env=env, cwd=root)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[name]["distribution"] == f"nanoclaw-runtime-{name}"
    assert rows[name]["available"] is True, rows[name]
    ran = _run([*cli, "run", "dev", "--", "sh", "-c", "pwd; exit 5"], env=env, cwd=root)
    assert ran.returncode == 5, ran.stderr
    expected = "/workspace/group" if name == "unshare" else str(root / "groups" / "dev")
    assert ran.stdout.strip() == expected
    request = {"prompt": "hello", "groupFolder": "dev", "chatJid": "x@g.us", "isMain": False}
    answered = _run([*cli, "run", "dev"], env=env, cwd=root, stdin=json.dumps(request))
    assert answered.returncode == 0, answered.stderr
    assert (
        "---NANOCLAW_OUTPUT_START---" in answered.stdout and "You said: 'hello'" in answered.stdout
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_passes_its_own_contract_suite_in_the_venv(venv: Path, name: str) -> None:
    python = str(venv / "bin" / "python")
    suite = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], env=_env(venv), cwd=EXAMPLES[name]
    )
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    summary = suite.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert "site-packages/nanoclaw_runtimes_core/testing" in suite.stdout, (
        "the suite did not run from the venv's core"
    )
