"""Overhead of the tart runtime per run, on top of the tart stand-in's own time.

Compares, for the same agent and the same simulated boot delay:

- baseline: the bare tart calls a run needs, made directly (clone, set, run in
  the background, poll ``exec true`` until the agent answers, ``exec -i`` the
  agent, stop, delete), with no runtime around them;
- runtime: ``nanoclaw_runtime_tart.plugin.execute`` doing the same, plus its
  sweep (``tart list``), slot, retries and cleanup.

The difference is the runtime's orchestration cost (wall clock, noisy on a
loaded machine); the CPU time of the host process itself is printed too. Also prints the cost of one
stand-in invocation (mostly Python start-up) to read the figures against, and
how many tart invocations each variant made. Run: ``python bench/tart_overhead.py [RUNS]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "tart"))

from nanoclaw_runtime_tart import plugin  # noqa: E402
from tart_harness import AGENT, STANDIN, make_request, make_settings  # noqa: E402

BASE = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
BOOT_S = "0.5"


def tart(*args: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(STANDIN), *args], capture_output=True, check=False, **kwargs)


def calls(state: Path) -> int:
    path = state / "calls.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def baseline_run(name: str, payload: bytes) -> float:
    started = time.perf_counter()
    tart("clone", BASE, name)
    tart("set", name, "--cpu", "4", "--memory", "8192")
    run = subprocess.Popen(
        [str(STANDIN), "run", name, "--no-graphics"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while tart("exec", name, "true").returncode != 0:
        time.sleep(0.2)
    out = tart("exec", "-i", name, sys.executable, str(AGENT), input=payload)
    assert b"NANOCLAW_OUTPUT_END" in out.stdout, out
    tart("stop", name)
    run.wait()
    tart("delete", name)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = Path(tempfile.mkdtemp(prefix="tart-bench-"))
    state = work / "state"
    os.environ.update(TART_STANDIN_STATE=str(state), TART_STANDIN_BOOT_S=BOOT_S)
    root = work / "project"
    root.mkdir()
    settings = make_settings(work / "slots")
    tart("clone", BASE, "warm-up")  # pulls the simulated OCI image once
    tart("delete", "warm-up")

    one = [0.0] * 10
    for i in range(len(one)):
        t = time.perf_counter()
        tart("--version")
        one[i] = time.perf_counter() - t

    payload = make_request(root, settings, prompt="ok").input_json()
    # Interleaved, so that load from elsewhere on the machine hits both variants alike.
    base: list[float] = []
    rt: list[float] = []
    base_cpu: list[float] = []
    rt_cpu: list[float] = []
    base_calls = rt_calls = 0
    for i in range(runs):
        before = calls(state)
        cpu = time.process_time()
        base.append(baseline_run(f"bench-{i}", payload))
        base_cpu.append(time.process_time() - cpu)
        base_calls += calls(state) - before
        before = calls(state)
        request = make_request(root, settings, prompt="ok")
        t, cpu = time.perf_counter(), time.process_time()
        result = plugin.execute(request=request)
        rt.append(time.perf_counter() - t)
        rt_cpu.append(time.process_time() - cpu)
        rt_calls += calls(state) - before
        assert result.exit_code == 0, result
    base_calls /= runs
    rt_calls /= runs
    leftover = json.loads(tart("list", "--source", "local", "--format", "json").stdout)

    med_base, med_rt = statistics.median(base), statistics.median(rt)
    print(f"tart stand-in, {runs} runs each, simulated boot {BOOT_S} s, {os.cpu_count()} CPUs")
    print(f"one stand-in invocation (tart --version): {statistics.median(one) * 1000:7.1f} ms")
    print(
        f"baseline (bare tart calls):  median {med_base * 1000:7.1f} ms   "
        f"{base_calls:.1f} tart invocations/run"
    )
    print(
        f"runtime (plugin.execute):     median {med_rt * 1000:7.1f} ms   "
        f"{rt_calls:.1f} tart invocations/run"
    )
    print(
        f"runtime overhead per run:            {(med_rt - med_base) * 1000:7.1f} ms "
        f"({(med_rt / med_base - 1) * 100:+.0f}%)"
    )
    print(
        f"host-process CPU per run: baseline {statistics.median(base_cpu) * 1000:.1f} ms, "
        f"runtime {statistics.median(rt_cpu) * 1000:.1f} ms"
    )
    print(f"VMs left behind: {len(leftover)}")


if __name__ == "__main__":
    main()
