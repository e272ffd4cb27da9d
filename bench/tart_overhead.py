"""Overhead of the tart runtime per run, against the bare tart calls, on the tart stand-in.

For the same agent and the same simulated boot (``TART_STANDIN_BOOT_S``):

- baseline: the bare tart calls a run needs, made directly (clone, set, run in the
  background, poll ``exec /bin/test`` until the guest answers, ``exec -i`` the agent,
  stop, delete), with no runtime around them;
- runtime: ``Runtimes.execute`` doing the same through the core (plan, locks, run
  registry, run log) plus the runtime's sweep, records, slot and cleanup;
- spare: ``Runtimes.execute`` with ``TART_SPARE=1``, where each run takes the VM booted
  ahead after the previous run (the first run of the series boots as usual).

Variants are interleaved so load elsewhere hits them alike; the figures are medians.
Also printed: one stand-in invocation (mostly Python start-up) and the tart calls per
run. Run: ``python bench/tart_overhead.py [RUNS] [BOOT_S]``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "standins" / "tart"
AGENT = REPO / "tests" / "tart" / "fake_agent.py"
OCI = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
BASE = "benchbase"
SHARE = "/Volumes/My Shared Files/group"


def tart(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(STANDIN), *args], capture_output=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def calls(home: Path) -> int:
    path = home / "calls.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def baseline_run(name: str, group: Path, payload: bytes) -> float:
    started = time.perf_counter()
    tart("clone", BASE, name)
    tart("set", name, "--cpu", "4", "--memory", "8192")
    run = subprocess.Popen(
        [str(STANDIN), "run", name, "--no-graphics", "--dir", f"group:{group}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    delay = 0.1  # the same back-off as the runtime's, so only the orchestration differs
    while tart("exec", name, "/bin/test", "-d", SHARE).returncode != 0:
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    ready = time.perf_counter()
    t_exec = time.perf_counter()
    out = tart("exec", "-i", name, "/usr/bin/python3", "/Users/admin/agent.py", input=payload)
    assert b"NANOCLAW_OUTPUT_END" in out.stdout, out
    t_stop = time.perf_counter()
    tart("stop", name)
    run.wait()
    t_del = time.perf_counter()
    tart("delete", name)
    if os.environ.get("BENCH_DEBUG"):
        print(
            f"  baseline: ready {ready - started:.2f} s, exec {t_stop - t_exec:.2f} s, "
            f"stop {t_del - t_stop:.2f} s, total {time.perf_counter() - started:.2f} s"
        )
    return time.perf_counter() - started


def wait_spare(rt: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        r.kind == "spare-vm" and r.details["ready"]
        for r in rt.stats(["tart"])  # type: ignore[attr-defined]
    ):
        time.sleep(0.05)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    boot_s = sys.argv[2] if len(sys.argv) > 2 else "2.0"
    work = Path(tempfile.mkdtemp(prefix="tart-bench-"))
    home, state, root = work / "tart-home", work / "tart-state", work / "project"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "fresh").mkdir()
    (root / "groups" / "spare").mkdir()
    (root / "groups" / "spare" / "config.json").write_text('{"containerConfig": {"spare": true}}')
    os.environ.update(
        TART_HOME=str(home),
        TART_STATE_DIR=str(state),
        TART_EXECUTABLE=str(STANDIN),
        TART_BASE_IMAGE=BASE,
        TART_STANDIN_BOOT_S=boot_s,
        TART_STOP_TIMEOUT="5",
        TART_SPARE_IDLE="600000",
        CONTAINER_RUNTIME="tart",
        NANOCLAW_RUNTIMES_LOAD="tart",
        CONTAINER_AGENT_COMMAND="/usr/bin/python3 /Users/admin/agent.py",
    )
    import nanoclaw_runtimes_core as nc

    tart("clone", OCI, BASE)
    shutil.copy(AGENT, home / "vms" / BASE / "disk" / "Users" / "admin" / "agent.py")
    one = []
    for _ in range(10):
        t = time.perf_counter()
        tart("--version")
        one.append(time.perf_counter() - t)

    rt = nc.Runtimes(root)

    def inp(folder: str) -> nc.ContainerInput:
        return nc.ContainerInput(prompt="ok", group_folder=folder, chat_jid="b@g.us", is_main=False)

    payload = b'{"prompt": "ok", "groupFolder": "fresh"}'
    rt.execute("spare", input=inp("spare"))  # boots the first spare
    times: dict[str, list[float]] = {"baseline": [], "runtime": [], "spare": []}
    counts: dict[str, int] = {"baseline": 0, "runtime": 0, "spare": 0}
    for i in range(runs):
        wait_spare(rt)  # booted first, so that no variant shares the CPUs with its boot
        before = calls(home)
        times["baseline"].append(baseline_run(f"bench-{i}", root / "groups" / "fresh", payload))
        counts["baseline"] += calls(home) - before
        for variant, folder in (("runtime", "fresh"), ("spare", "spare")):
            before = calls(home)
            t = time.perf_counter()
            result = rt.execute(folder, input=inp(folder))
            times[variant].append(time.perf_counter() - t)
            counts[variant] += calls(home) - before
            assert result.exit_code == 0, result
    wait_spare(rt)  # the last run's reaper, so that nothing is left booting
    rt.reset("spare", scope="warm")
    left = json.loads(tart("list", "--source", "local", "--format", "json").stdout)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tart stand-in, {runs} runs each, simulated boot {boot_s} s, {os.cpu_count()} CPUs")
    print(f"one stand-in invocation (tart --version): {statistics.median(one) * 1000:7.1f} ms")
    for name, label in (
        ("baseline", "baseline (bare tart calls)"),
        ("runtime", "runtime (Runtimes.execute)"),
        ("spare", "runtime with a spare VM"),
    ):
        print(
            f"{label:30s} median {med[name] * 1000:7.1f} ms  "
            f"ratio {med[name] / med['baseline']:.2f}"
            f"  {counts[name] / runs:.1f} tart calls/run"
        )
    print(f"runtime overhead per run: {(med['runtime'] - med['baseline']) * 1000:.1f} ms")
    print(f"VMs left behind (besides the base): {len(left) - 1}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
