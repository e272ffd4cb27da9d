"""Start-up time of the ``nanoclaw-runtimes`` command.

Times ``nanoclaw-runtimes plugins --json`` (load every installed runtime and ask
each engine's status) and ``nanoclaw-runtimes --help`` (the floor: Python plus
argument parsing), side by side with a bare ``python -c pass``. Goal: the CLI
adds at most 100 ms on a 2-core machine.

    python bench/cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], runs: int, cwd: str) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    # The script pip installs beside this interpreter (a PATH lookup may hit a slow shim).
    beside = Path(sys.executable).parent / "nanoclaw-runtimes"
    cli = str(beside) if beside.exists() else shutil.which("nanoclaw-runtimes")
    if cli is None:
        sys.exit("nanoclaw-runtimes is not installed beside this Python nor on PATH")
    with tempfile.TemporaryDirectory() as root:
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "nanoclaw-runtimes --help": [cli, "--help"],
            "nanoclaw-runtimes plugins --json": [cli, "--root", root, "plugins", "--json"],
        }
        results = {name: timed(argv, args.runs, root) for name, argv in cases.items()}
    base = statistics.median(results["python -c pass"])
    print(f"median of {args.runs} runs each:")
    for name, samples in results.items():
        med = statistics.median(samples)
        extra = f"   (+{med - base:.0f} ms over bare python)" if name != "python -c pass" else ""
        print(f"  {name:<36} {med:7.1f} ms{extra}")


if __name__ == "__main__":
    main()
