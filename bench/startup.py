#!/usr/bin/env python3
"""What one ``nanoclaw-runtimes run`` costs next to its floor: the interpreter and bubblewrap.

Every chat message is a new ``nanoclaw-runtimes`` process, so its start-up is paid per
message. In one run, interleaved (a change of load hits every case alike), this times:

- ``python -c pass``: the interpreter's own start (the floor of any Python command);
- ``bwrap --ro-bind / / true``: the bare sandbox tool;
- ``nanoclaw-runtimes run dev -- true``: a group whose config names its runtime and engine
  (``{"containerConfig": {"runtime": "container", "engine": "bubblewrap"}}``);
- ``nanoclaw-runtimes run auto -- true``: a group that names neither (auto-detected);
- ``nanoclaw-runtimes run dev``: one ContainerInput answered by the example agent, the path
  of a real chat message (the agent is a second Python started inside the sandbox);
- the two ``dev`` runs again with ``NANOCLAW_RESIDENT`` set: the launcher hands them to a
  resident helper (started by the warm-up runs, stopped at the end).

It prints median, mean and p90 in milliseconds and each median's ratio to ``python -c pass``
and to bare bwrap; with ``--icount`` also the instructions each process executes (valgrind's
callgrind, the Python process only), which load on the machine does not change.

    python bench/startup.py [--runs 30] [--icount]

Run it from the virtual environment the runtimes are installed in, with bubblewrap installed.
Byte-code caching is left on for the runs (``PYTHONDONTWRITEBYTECODE`` is dropped): without
it every start compiles the sources again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUT = json.dumps(
    {"prompt": "bench", "groupFolder": "dev", "chatJid": "bench@g.us", "isMain": False}
).encode()


def project(top: Path) -> Path:
    """A throw-away project: ``dev`` names its runtime and engine, ``auto`` names neither."""
    root = top / "project"
    for folder in ("groups/global", "groups/dev", "groups/auto", "data"):
        (root / folder).mkdir(parents=True)
    engine = {"containerConfig": {"runtime": "container", "engine": "bubblewrap"}}
    (root / "groups/dev/config.json").write_text(json.dumps(engine))
    (root / "groups/auto/config.json").write_text("{}")
    return root


def environment(top: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTAINER_", "NANOCLAW_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["NANOCLAW_MOUNT_ALLOWLIST"] = str(top / "mount-allowlist.json")
    return env


def run_once(argv: list[str], env: dict[str, str], stdin: bytes | None) -> float:
    """Milliseconds from start to exit; the command must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=120)
    took = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return took


def icount(argv: list[str], env: dict[str, str], stdin: bytes | None) -> int | None:
    """Instructions the process executes (its children not counted), or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=600,
    )
    for line in done.stderr.decode().splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--icount", action="store_true", help="count instructions (valgrind)")
    args = parser.parse_args()
    beside = Path(sys.executable).parent / "nanoclaw-runtimes"
    cli = str(beside) if beside.exists() else shutil.which("nanoclaw-runtimes")
    bwrap = shutil.which("bwrap")
    if cli is None or bwrap is None:
        sys.exit("needs nanoclaw-runtimes beside this Python (or on PATH) and bwrap on PATH")
    top = Path(tempfile.mkdtemp(prefix="nanoclaw-startup-"))
    top.chmod(0o755)  # run as root, the sandbox user must reach the project
    runs = top / "runs"
    try:
        root = project(top)
        env = environment(top)
        ours = [cli, "--root", str(root), "run"]
        resident = {**env, "NANOCLAW_RESIDENT": "600000", "NANOCLAW_RUNS_DIR": str(runs)}
        cases: dict[str, tuple[list[str], bytes | None, dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], None, env),
            "bwrap --ro-bind / / true": ([bwrap, "--ro-bind", "/", "/", "true"], None, env),
            "run dev -- true (engine named)": ([*ours, "dev", "--", "true"], None, env),
            "run auto -- true (auto-detected)": ([*ours, "auto", "--", "true"], None, env),
            "run dev (one ContainerInput)": ([*ours, "dev"], INPUT, env),
            "run dev -- true, resident helper": ([*ours, "dev", "--", "true"], None, resident),
            "run dev (ContainerInput), resident": ([*ours, "dev"], INPUT, resident),
        }
        for argv, stdin, environ in cases.values():  # warm up: caches, byte code, the helper
            for _ in range(3):
                run_once(argv, environ, stdin)
                time.sleep(0.05)  # the first resident run starts the helper for the next
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (argv, stdin, environ) in cases.items():
                samples[name].append(run_once(argv, environ, stdin))
        counts = {
            name: icount(argv, environ, stdin) if args.icount else None
            for name, (argv, stdin, environ) in cases.items()
            if not name.startswith("bwrap")
        }
    finally:
        from nanoclaw_runtimes_core.resident import control

        if runs.is_dir():
            control.stop(runs)
        shutil.rmtree(top, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor, bare = medians["python -c pass"], medians["bwrap --ro-bind / / true"]
    print(f"{args.runs} interleaved runs each, milliseconds")
    header = f"| {'command':<34} | median | mean  |  p90  | x python | x bwrap |"
    if args.icount:
        header += " instructions |"
    print(header)
    print("|" + "|".join("-" * (len(part) + 0) for part in header.split("|")[1:-1]) + "|")
    for name, values in samples.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        line = (
            f"| {name:<34} | {medians[name]:6.1f} | {statistics.mean(values):5.1f} | {p90:5.1f} "
            f"| {medians[name] / floor:8.1f} | {medians[name] / bare:7.1f} |"
        )
        if args.icount:
            count = counts.get(name)
            line += f" {count / 1e6:10.0f} M |" if count else f" {'—':>12} |"
        print(line)


if __name__ == "__main__":
    main()
