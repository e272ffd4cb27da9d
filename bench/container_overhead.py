#!/usr/bin/env python3
"""What `nanoclaw-runtimes run GROUP -- CMD` on bubblewrap costs over the bare bwrap it runs.

For N runs each, it times (from process start):
- whole run of `true`: `nanoclaw-runtimes run --runtime container GROUP -- true`
  versus the exact bwrap command line the runtime builds for it;
- first output of `echo ready`: until the first stdout byte arrives.

and prints median and p90 of each, and the framework's overhead (goal: at most 100 ms).

    python3 bench/container_overhead.py [--runs 30] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from nanoclaw_runtime_container.engines.bubblewrap import BubblewrapEngine
from nanoclaw_runtime_container.settings import ContainerSettings

from nanoclaw_runtimes_core.groups import resolve_group
from nanoclaw_runtimes_core.models import ExecuteRequest, Project
from nanoclaw_runtimes_core.mounts import contract_mounts

GROUP = "bench"


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds to the first stdout byte, seconds to exit) of one run of ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    first_at = time.perf_counter() - start
    proc.stdout.read()
    code = proc.wait()
    total = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{shlex.join(argv)} exited with {code}")
    return (first_at if first else total), total


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return statistics.median(ms), p90


def bwrap_argv(root: Path, command: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The command line (and environment) the runtime runs for ``command`` in GROUP."""
    project = Project(root=root)
    group = resolve_group(project, GROUP)
    settings = ContainerSettings(engine="bubblewrap")
    request = ExecuteRequest(
        project=project,
        group=group,
        settings=settings,
        mounts=contract_mounts(project, group).mounts,
        timeout_ms=60_000,
        command=command,
    )
    engine = BubblewrapEngine(settings, project)
    return engine.argv(request, "bench"), engine.env(request)


def in_process(root: Path, runs: int) -> list[float]:
    """Seconds per call of the runtime's execute hook for `-- true`, in this process."""
    from nanoclaw_runtime_container import plugin

    project = Project(root=root)
    group = resolve_group(project, GROUP)
    request = ExecuteRequest(
        project=project,
        group=group,
        settings=ContainerSettings(engine="bubblewrap"),
        mounts=contract_mounts(project, group).mounts,
        timeout_ms=60_000,
        command=("true",),
    )
    plugin.execute(request=request)  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = plugin.execute(request=request)
        times.append(time.perf_counter() - start)
        assert result.exit_code == 0, result
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--root", type=Path, help="project root (default: a temporary one)")
    args = parser.parse_args()
    # The console script beside this interpreter: a version manager's shim (pyenv) on PATH
    # would add its own start-up to every run.
    beside = Path(sys.executable).parent / "nanoclaw-runtimes"
    cli = str(beside) if beside.exists() else shutil.which("nanoclaw-runtimes")
    if cli is None:
        print("nanoclaw-runtimes is not installed (pip install -e . -e plugins/container)")
        return 1
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-") as tmp:
        root = (args.root or Path(tmp)).resolve()
        (root / "groups" / GROUP).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CONTAINER_ENGINE": "bubblewrap"}
        cases = {}
        for label, command in (("true", ("true",)), ("echo", ("echo", "ready"))):
            bare, bare_env = bwrap_argv(root, command)
            framework = [
                cli,
                "--root",
                str(root),
                "run",
                "--runtime",
                "container",
                GROUP,
                "--",
                *command,
            ]
            if label == "true":
                print("bwrap command line the runtime runs (for `-- true`):")
                print("  " + shlex.join(bare) + "\n")
            timed(framework, env)  # warm caches once
            timed(bare, bare_env)
            results: dict[str, list[tuple[float, float]]] = {"framework": [], "bare": []}
            for _ in range(args.runs):  # interleaved, so drift hits both alike
                results["framework"].append(timed(framework, env))
                results["bare"].append(timed(bare, bare_env))
            cases[label] = results

        print(f"{args.runs} runs each, milliseconds (median / p90), on {os.cpu_count()} CPUs\n")
        print(f"{'measure':44} {'framework':>17} {'bare bwrap':>17} {'overhead':>10}")
        rows = [
            ("whole run, -- true", "true", 1),
            ("start to first output, -- echo ready", "echo", 0),
        ]
        for title, label, index in rows:
            fw = summary([r[index] for r in cases[label]["framework"]])
            bare = summary([r[index] for r in cases[label]["bare"]])
            print(
                f"{title:44} {fw[0]:7.1f} / {fw[1]:7.1f} {bare[0]:7.1f} / {bare[1]:7.1f} "
                f"{fw[0] - bare[0]:8.1f}"
            )
        hook = summary(in_process(root, args.runs))
        print(
            f"{'execute hook in process, -- true':44} {hook[0]:7.1f} / {hook[1]:7.1f}"
            "   (the runtime's own share: no interpreter start, no plugin loading)"
        )
        python = summary([timed([sys.executable, "-c", "print(1)"])[1] for _ in range(10)])
        print(f"\nfor reference, a bare `python3 -c 'print(1)'`: {python[0]:.1f} ms median")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
