#!/usr/bin/env python3
"""Benchmark of warm VMs (the vibe runtime's QEMU engine on Linux), side by side in one run.

For a minimal (busybox) guest, through the real command-line tool
(``nanoclaw-runtimes run dev -- true``, timed from the CLI's start to its exit):

- cold runs (the group's VM powered off first, ``warm --stop``) and warm runs;
- first output of an agent round trip (a ContainerInput on stdin; time to the first
  output block on stdout), cold and warm;
- the same warm run and round trip inside one process (``Runtimes.execute``): the engine's
  own share, without the interpreter's start;
- the warm run and round trip again with ``NANOCLAW_RESIDENT`` set (a resident helper takes
  them: no interpreter start-up and imports but the launcher's);
- the CLI's bare start (``nanoclaw-runtimes --help``), the floor of every CLI figure;
- the memory an idle warm VM holds (QEMU's resident set, and its share daemons').

Beside them, the seed's figures: vibe on an M1 boots per run, ~5 s first and ~2 s later
runs; this engine before warm VMs booted per run too, 2.7-3 s under TCG. Goals under TCG:
a warm run <= 150 ms from CLI start to exit, first output <= 100 ms.

Usage: python bench/warm.py [--runs 10] [--cold 3]
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

SEED = "seed: vibe on M1 ~5 s first, ~2 s later runs; QEMU engine before warm VMs 2.7-3 s"
CLI = shutil.which("nanoclaw-runtimes") or str(Path(sys.executable).with_name("nanoclaw-runtimes"))
INPUT = {"prompt": "ping", "groupFolder": "dev", "chatJid": "bench@g.us", "isMain": False}
START = b"---NANOCLAW_OUTPUT_START---"


def ms(values: list[float]) -> str:
    if not values:
        return "—"
    values = sorted(values)
    p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
    return f"{statistics.median(values) * 1000:7.0f} / {p90 * 1000:5.0f}"


def cli_run(root: Path, env: dict[str, str], args: list[str], stdin: bytes | None = None) -> float:
    """Wall time of one CLI call (start to exit); it must succeed."""
    t = time.monotonic()
    proc = subprocess.run(
        [CLI, "--root", str(root), *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=300,
    )
    took = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    return took


def cli_first_block(root: Path, env: dict[str, str]) -> tuple[float, float]:
    """(time to the first output block on stdout, time to exit) of one agent round trip."""
    t = time.monotonic()
    proc = subprocess.Popen(
        [CLI, "--root", str(root), "run", "dev"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INPUT).encode())
    proc.stdin.close()
    seen = b""
    first = None
    while chunk := proc.stdout.read1(65536):
        seen += chunk
        if first is None and START in seen:
            first = time.monotonic() - t
    proc.wait(timeout=300)
    if proc.returncode != 0 or first is None:
        raise SystemExit(f"the agent round trip failed ({proc.returncode}): {seen[-300:]!r}")
    return first, time.monotonic() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()

    from nanoclaw_runtimes_core import Runtimes
    from nanoclaw_runtimes_core.models import ContainerInput, OutputSink

    root = Path(tempfile.mkdtemp(prefix="vibe-warm-bench-")) / "project"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "dev").mkdir()
    env = {
        **os.environ,
        "CONTAINER_RUNTIME": "vibe",
        "NANOCLAW_RUNTIMES_LOAD": "vibe",
        "VIBE_ENGINE": "qemu",
        "VIBE_RAM": "512",
        "VIBE_KEEP_WARM": "120000",
    }
    # Start-up figures are taken with the byte-code cache (without it every start recompiles).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rt = Runtimes(root, environ=env)
    try:
        print(rt.prepare(base_runtime="vibe", options={"minimal": True}))
        rt.execute("dev", command=["true"])  # the group's disk, the kernel cache, the KVM verdict

        from nanoclaw_runtimes_core.resident import control

        resident = {**env, "NANOCLAW_RESIDENT": "600000"}
        cli_run(root, resident, ["run", "dev", "--", "true"])  # starts the helper
        control.wait_for_helper()
        cold, cold_first, warm, warm_first, warm_exit = [], [], [], [], []
        res, res_first, res_exit = [], [], []
        for _ in range(args.cold):
            cli_run(root, env, ["warm", "--stop"])
            cold.append(cli_run(root, env, ["run", "dev", "--", "true"]))
            cli_run(root, env, ["warm", "--stop"])
            cold_first.append(cli_first_block(root, env)[0])
        for _ in range(args.runs):
            warm.append(cli_run(root, env, ["run", "dev", "--", "true"]))
            first, total = cli_first_block(root, env)
            warm_first.append(first)
            warm_exit.append(total)
            res.append(cli_run(root, resident, ["run", "dev", "--", "true"]))
            first, total = cli_first_block(root, resident)
            res_first.append(first)
            res_exit.append(total)
        bare = [cli_run(root, env, ["--help"]) for _ in range(args.runs)]

        class First(OutputSink):
            at: float | None = None

            def on_output(self, output: object) -> None:
                if self.at is None:
                    self.at = time.monotonic()

        inproc, inproc_first = [], []
        for _ in range(args.runs):
            t = time.monotonic()
            r = rt.execute("dev", command=["true"])
            inproc.append(time.monotonic() - t)
            assert r.exit_code == 0, r.error_message()
            sink = First()
            t = time.monotonic()
            r = rt.execute("dev", input=ContainerInput(**_snake(INPUT)), sink=sink)
            assert r.status == "success", r.error_message()
            inproc_first.append((sink.at or t) - t)

        from nanoclaw_runtime_vibe.qemu import QemuEngine, vmstate

        time.sleep(2.0)  # idle
        vms = QemuEngine().warm_vms(rt.project, rt.runtime_settings("vibe"))
        qemu_mb = vms[0].memory_mb if vms else 0.0
        meta = vmstate.read_json(vms[0].folder / vmstate.META) if vms else {}
        daemons_mb = sum(vmstate.rss_mb(int(p)) for p in meta.get("daemons", []))

        print(f"\nmilliseconds, median / p90 ({args.runs} warm, {args.cold} cold runs); {SEED}")
        print(f"{'measure':54} {'cold':>15} {'warm':>15}")
        print(f"{'`run dev -- true`, CLI start to exit':54} {ms(cold):>15} {ms(warm):>15}")
        first_label = "agent round trip: CLI start to first block"
        print(f"{first_label:54} {ms(cold_first):>15} {ms(warm_first):>15}")
        print(f"{'agent round trip: CLI start to exit':54} {'':>15} {ms(warm_exit):>15}")
        print(f"{'`run dev -- true`, resident helper':54} {'':>15} {ms(res):>15}")
        label = "agent round trip, resident helper: to first block"
        print(f"{label:54} {'':>15} {ms(res_first):>15}")
        print(f"{'agent round trip, resident helper: to exit':54} {'':>15} {ms(res_exit):>15}")
        print(f"{'`run dev -- true` in process (Runtimes.execute)':54} {'':>15} {ms(inproc):>15}")
        print(f"{'agent round trip in process: to first block':54} {'':>15} {ms(inproc_first):>15}")
        print(f"{'bare CLI start (`nanoclaw-runtimes --help`)':54} {'':>15} {ms(bare):>15}")
        print(
            f"\nidle warm VM ({env['VIBE_RAM']} MB guest): QEMU resident {qemu_mb:.0f} MB, "
            f"share daemons {daemons_mb:.0f} MB"
        )
        print("goals (TCG): warm run <= 150 ms CLI start to exit; first output <= 100 ms")
    finally:
        from nanoclaw_runtimes_core.resident import control

        control.stop()
        with_reset = [g for g in ("dev",)]
        for g in with_reset:
            try:
                rt.reset(g, scope="warm")
            except Exception as exc:
                print(f"clean-up of {g}: {exc}", file=sys.stderr)
        shutil.rmtree(root.parent, ignore_errors=True)
    return 0


def _snake(data: dict[str, object]) -> dict[str, object]:
    return {
        "prompt": data["prompt"],
        "group_folder": data["groupFolder"],
        "chat_jid": data["chatJid"],
        "is_main": data["isMain"],
    }


if __name__ == "__main__":
    sys.exit(main())
