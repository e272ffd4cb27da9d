"""Meta-tests of the contract suite: it passes a sound runtime and fails every broken variant.

Each variant of :mod:`reference_runtime` runs the whole suite in its own pytest
process, with a timeout, several at once; the tests meant to catch the breakage
must be among those that fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.record import Record

from .reference_runtime import BREAKAGES, CAUGHT_BY

HERE = Path(__file__).resolve().parent
VARIANT_TIMEOUT_S = 480
VARIANTS = [None, *BREAKAGES]


class SuiteRun(Record):
    returncode: int
    output: str

    @property
    def failed_tests(self) -> list[str]:
        return re.findall(r"^FAILED \S+::(\w+)", self.output, re.MULTILINE)

    @property
    def summary(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _run_variant(base: Path, breakage: str | None) -> SuiteRun:
    name = breakage or "sound"
    folder = base / name.replace("-", "_")
    folder.mkdir()
    (folder / f"test_variant_{folder.name}.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(HERE.parent.parent)!r})
            from tests.core.reference_runtime import Reference
            from nanoclaw_runtimes_core.testing.contract import RuntimeContract


            class TestVariant(RuntimeContract):
                runtime_name = "reference"
                runtime_plugin = Reference({breakage!r})
                deadline_grace_s = 15.0
            """
        )
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    if breakage is not None:
        # The sound variant runs the whole suite; a broken one only the tests meant to catch it.
        argv += ["-k", " or ".join(sorted(CAUGHT_BY[breakage]))]
    try:
        done = subprocess.run(
            argv,
            cwd=folder,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
            timeout=VARIANT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return SuiteRun(returncode=-1, output=f"the suite hung past {VARIANT_TIMEOUT_S} s\n{out}")
    return SuiteRun(returncode=done.returncode, output=done.stdout + done.stderr)


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str | None, SuiteRun]]:
    base = tmp_path_factory.mktemp("variants")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {b: pool.submit(_run_variant, base, b) for b in VARIANTS}
        yield {b: f.result() for b, f in futures.items()}


@pytest.mark.slow
def test_the_suite_passes_the_sound_reference_runtime(
    suite_runs: dict[str | None, SuiteRun],
) -> None:
    run = suite_runs[None]
    assert run.returncode == 0, run.output[-6000:]
    assert re.search(r"\b2\d passed\b", run.summary), run.summary


@pytest.mark.slow
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_suite_catches_a_broken_runtime(
    suite_runs: dict[str | None, SuiteRun], breakage: str
) -> None:
    run = suite_runs[breakage]
    assert run.returncode != -1, run.output[-3000:]
    missed = CAUGHT_BY[breakage] - set(run.failed_tests)
    assert run.returncode == 1 and not missed, (
        f"the contract suite did not catch ({BREAKAGES[breakage]}) in {sorted(missed)}; "
        f"failed: {run.failed_tests}\n{run.output[-4000:]}"
    )
    print(f"{breakage}: caught by {', '.join(sorted(run.failed_tests))}")
