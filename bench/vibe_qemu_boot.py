#!/usr/bin/env python3
"""Benchmark of the vibe runtime's QEMU engine (Linux), against the seed's vibe table.

Prints, for a minimal (busybox) guest booted through the whole runtime
(prepare + execute, as `nanoclaw-runtimes run` does):

- first run of a group (clone from the base included) and later runs:
  boot-to-first-output (the guest's boot line on the console) and whole run;
- disk cost per group: apparent and allocated MB;
- ``--boots N``: N bare boots in a row (kernel + initramfs + power-off) with the
  engine's kernel arguments, counting hangs (a boot that does not print its boot
  line within 30 s); ``--no-tsc-fix`` drops ``tsc_early_khz``/``tsc=reliable``
  to show the hang it prevents.

Usage: python bench/vibe_qemu_boot.py [--runs 5] [--boots 0] [--no-tsc-fix]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nanoclaw_runtimes_core import Runtimes
from nanoclaw_runtimes_core.models import ContainerInput, OutputSink

AGENT = """#!/bin/sh
cat > /dev/null
n=$(cat /root/n 2>/dev/null || echo 0); echo $((n + 1)) > /root/n
S="---NANOCLAW_OUTPUT_"
printf '%sSTART---\\n{"status":"success","result":"run %s"}\\n%sEND---\\n' "$S" "$n" "$S"
"""


class FirstOutput(OutputSink):
    def __init__(self) -> None:
        self.first_block: float | None = None

    def on_output(self, output) -> None:  # type: ignore[no-untyped-def]
        if self.first_block is None:
            self.first_block = time.monotonic()


def bench_runs(runs: int) -> None:
    from nanoclaw_runtime_vibe.qemu import engine as qemu_engine

    root = Path(tempfile.mkdtemp(prefix="vibe-qemu-bench-")) / "project"
    (root / "groups" / "global").mkdir(parents=True)
    group = root / "groups" / "bench"
    group.mkdir()
    (group / "agent.sh").write_text(AGENT)
    env = {
        **os.environ,
        "CONTAINER_RUNTIME": "vibe",
        "NANOCLAW_RUNTIMES_LOAD": "vibe",
        "VIBE_ENGINE": "qemu",
        "VIBE_AGENT_COMMAND": "/bin/sh /workspace/group/agent.sh",
    }
    rt = Runtimes(root, environ=env)
    t = time.monotonic()
    print(rt.prepare(base_runtime="vibe", options={"minimal": True}))
    print(f"minimal base build: {time.monotonic() - t:.2f} s")

    booted_at: list[float] = []
    real_feed = qemu_engine.BootWatch.feed

    def feed(self, data: bytes) -> None:  # type: ignore[no-untyped-def]
        was = self.booted.is_set()
        real_feed(self, data)
        if not was and self.booted.is_set():
            booted_at.append(time.monotonic())

    qemu_engine.BootWatch.feed = feed  # type: ignore[method-assign]
    rows = []
    for i in range(runs):
        sink = FirstOutput()
        inp = ContainerInput(prompt="x", group_folder="bench", chat_jid="b", is_main=False)
        t0 = time.monotonic()
        result = rt.execute("bench", input=inp, sink=sink)
        total = time.monotonic() - t0
        assert result.status == "success", result.error_message()
        boot = booted_at[-1] - t0 if booted_at else float("nan")
        block = (sink.first_block or t0) - t0
        rows.append((boot, block, total))
        label = "first (clone included)" if i == 0 else f"later #{i}"
        print(
            f"{label:24} boot line {boot:5.2f} s  first block {block:5.2f} s  "
            f"whole run {total:5.2f} s"
        )
    later = rows[1:]
    if later:
        print(
            f"later runs, median: boot line {statistics.median(r[0] for r in later):.2f} s, "
            f"whole run {statistics.median(r[2] for r in later):.2f} s "
            f"(seed's vibe: ~5 s first, ~2 s after)"
        )
    disk = root / "data" / "vibe-images" / "bench.raw"
    st = disk.stat()
    print(
        f"group disk: {st.st_size / 2**20:.0f} MB apparent, {st.st_blocks * 512 / 2**20:.1f} MB "
        f"allocated (seed: 3 GB per group)"
    )


def bench_boots(n: int, tsc_fix: bool) -> None:
    from nanoclaw_runtime_vibe.qemu import accel, engine, kernel

    images = Path(tempfile.mkdtemp(prefix="vibe-qemu-boots-"))
    files = kernel.ensure_kernel_dir(images)
    qemu = engine.find_qemu(object()) or "qemu-system-x86_64"
    host = accel.host_info(qemu, files, "tcg")
    append = [*engine.BASE_APPEND, "quiet", "nanoclaw.probe"]
    if tsc_fix and host.tsc_khz:
        append += [f"tsc_early_khz={host.tsc_khz}", "tsc=reliable"]
    argv = [
        qemu,
        *("-M", "microvm,acpi=on", "-accel", "tcg,thread=multi", "-cpu", "max"),
        *("-m", "512M", "-smp", "2", "-nodefaults", "-no-user-config", "-nographic"),
        *("-no-reboot", "-serial", "stdio", "-monitor", "none"),
        *("-kernel", str(files.kernel), "-initrd", str(files.initrd)),
        *("-append", " ".join(append)),
    ]
    hangs, times = 0, []
    for i in range(n):
        t = time.monotonic()
        ok, tail = accel.boot_within(argv, kernel.BOOTED, 30.0)
        took = time.monotonic() - t
        if ok:
            times.append(took)
        else:
            hangs += 1
            print(f"boot {i + 1}: HUNG; console: {tail[-200:]!r}", flush=True)
    fix = "with" if tsc_fix else "WITHOUT"
    med = statistics.median(times) if times else float("nan")
    print(f"{n} boots {fix} the TSC fix: {hangs} hung; median boot {med:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--boots", type=int, default=0)
    parser.add_argument("--no-tsc-fix", action="store_true")
    args = parser.parse_args()
    if args.runs:
        bench_runs(args.runs)
    if args.boots:
        bench_boots(args.boots, not args.no_tsc_fix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
