#!/usr/bin/env python3
"""Throughput of the container runtime under the concurrency bound: 20 groups x 5 runs.

Every run is a separate `nanoclaw-runtimes run --runtime container gNN -- sh -c …`
(as NanoClaw starts one per message) that burns some CPU and records its start
and end time in its group's workspace. More clients are started at once than the
bound allows, and each group's runs are submitted together, so both the slot pool
and the group locks are contended. It then checks:

- no lost output: every run exited 0 and printed its own "done" line, and its
  group's log holds its start and end;
- same-group runs never overlap, and no more than the bound ran at once;
- all cores busy: CPU use of the whole machine while the runs went on.

    python3 bench/container_throughput.py [--groups 20] [--runs 5] [--bound N] [--work 150000]
        [--engine bubblewrap|docker|podman|container] [--image REF]

docker and podman need their engine's environment (``eval "$(bash scripts/engines.sh start)"``
on a development machine) and an image with a shell (default: nanoclaw-test/busybox:latest).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The host's clock as every sandbox on it sees it (busybox's date has no %N)
NOW = "$(cut -d' ' -f1 /proc/uptime)"
SCRIPT = (
    f'echo "start {{tag}} {NOW}" >> /workspace/group/runs.log; '
    "i=0; while [ $i -lt {work} ]; do i=$((i+1)); done; "
    f'echo "end {{tag}} {NOW}" >> /workspace/group/runs.log; echo "done {{tag}}"'
)


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_one(cli: str, root: Path, group: str, tag: str, work: int, env: dict) -> dict:
    started = time.monotonic()
    proc = subprocess.run(
        [cli, "--root", str(root), "run", "--runtime", "container", group, "--", "sh", "-c",
         SCRIPT.format(tag=tag, work=work)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    return {
        "group": group,
        "tag": tag,
        "code": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "latency": time.monotonic() - started,
    }


def intervals(root: Path, group: str) -> dict[str, list[float]]:
    spans: dict[str, list[float]] = {}
    log = root / "groups" / group / "runs.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, tag, stamp = line.split()
        spans.setdefault(tag, [0.0, 0.0])[0 if kind == "start" else 1] = float(stamp)
    return spans


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--bound",
        type=int,
        default=max(2, os.cpu_count() or 2),
        help="MAX_CONCURRENT_CONTAINERS (default: CPU count, at least 2)",
    )
    parser.add_argument(
        "--clients", type=int, default=0, help="clients started at once (default: 3 x bound)"
    )
    parser.add_argument("--work", type=int, default=150000, help="shell loop iterations per run")
    parser.add_argument(
        "--engine", default="bubblewrap", choices=("bubblewrap", "docker", "podman", "container")
    )
    parser.add_argument(
        "--image", default="nanoclaw-test/busybox:latest", help="image (not for bubblewrap)"
    )
    args = parser.parse_args()
    # The console script beside this interpreter: a version manager's shim (pyenv) on PATH
    # would add its own start-up to every run.
    beside = Path(sys.executable).parent / "nanoclaw-runtimes"
    cli = str(beside) if beside.exists() else shutil.which("nanoclaw-runtimes")
    if cli is None:
        print("nanoclaw-runtimes is not installed (pip install -e . -e plugins/container)")
        return 1
    clients = args.clients or 3 * args.bound
    groups = [f"g{i:02d}" for i in range(args.groups)]
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the sandbox user must reach its mounts
        for group in groups:
            (root / "groups" / group).mkdir(parents=True)
        env = {
            **os.environ,
            "MAX_CONCURRENT_CONTAINERS": str(args.bound),
            "CONTAINER_ENGINE": args.engine,
            "CONTAINER_IMAGE": args.image,
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        jobs = [(g, f"{g}-r{r}") for g in groups for r in range(args.runs)]
        busy0, total0 = cpu_times()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(lambda j: run_one(cli, root, j[0], j[1], args.work, env), jobs))
        wall = time.monotonic() - started
        busy1, total1 = cpu_times()

        failures = [r for r in results if r["code"] != 0 or f"done {r['tag']}" not in r["stdout"]]
        all_spans: list[tuple[float, float]] = []
        overlaps = []
        missing = []
        for group in groups:
            spans = intervals(root, group)
            tags = {t for g, t in jobs if g == group}
            missing += sorted(tags - {t for t, (s, e) in spans.items() if s and e})
            ordered = sorted(tuple(v) for v in spans.values())
            all_spans += ordered
            overlaps += [(group, a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]
        in_sandbox = sum(e - s for s, e in all_spans)
        latencies = [r["latency"] for r in results]

        print(
            f"{len(jobs)} runs ({args.groups} groups x {args.runs}), bound "
            f"{args.bound}, {clients} clients at once, {os.cpu_count()} CPUs, engine {args.engine}"
        )
        print(f"wall time           {wall:8.1f} s   ({len(jobs) / wall:.2f} runs/s)")
        print(
            f"client latency      {statistics.median(latencies):8.2f} s median, "
            f"{max(latencies):.2f} s max (includes waiting for a slot or the group)"
        )
        print(f"time in sandboxes   {in_sandbox:8.1f} s   (sum of the runs' own durations)")
        print(
            f"CPU busy            {100 * (busy1 - busy0) / max(1, total1 - total0):8.1f} % "
            "of all cores over the wall time"
        )
        print(f"max running at once {max_overlap(all_spans):8d}     (bound {args.bound})")
        print(f"failed or lost      {len(failures):8d}")
        print(f"missing log entries {len(missing):8d}")
        print(f"same-group overlaps {len(overlaps):8d}")
        for r in failures[:3]:
            print(f"  {r['tag']}: exit {r['code']}: {r['stderr'].strip()[-300:]}")
        ok = not failures and not missing and not overlaps and max_overlap(all_spans) <= args.bound
        print("OK" if ok else "PROBLEMS FOUND")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
