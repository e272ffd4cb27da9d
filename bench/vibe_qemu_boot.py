#!/usr/bin/env python3
"""Benchmark of cold boots of the vibe runtime's QEMU engine (Linux), against the seed's vibe
table. Warm runs (no boot) are ``bench/warm.py``.

Prints, for a minimal (busybox) guest booted through the whole runtime with
``VIBE_KEEP_WARM=0`` (every run boots, as before warm VMs):

- first run of a group (clone from the base included) and later cold runs: the boot (QEMU
  start to the guest program answering) and the whole run;
- disk cost per group: apparent and allocated MB;
- ``--boots N``: N bare probe boots in a row (kernel + initramfs + power-off) with the
  engine's kernel arguments, counting hangs (no boot line within 30 s); ``--no-tsc-fix``
  drops ``tsc_early_khz``/``tsc=reliable`` to show the hang it prevents.

Usage: python bench/vibe_qemu_boot.py [--runs 5] [--boots 0] [--no-tsc-fix]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def bench_runs(runs: int) -> None:
    from nanoclaw_runtime_vibe.qemu import launch

    from nanoclaw_runtimes_core import Runtimes

    root = Path(tempfile.mkdtemp(prefix="vibe-qemu-bench-")) / "project"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "bench").mkdir()
    env = {
        **os.environ,
        "CONTAINER_RUNTIME": "vibe",
        "NANOCLAW_RUNTIMES_LOAD": "vibe",
        "VIBE_ENGINE": "qemu",
        "VIBE_KEEP_WARM": "0",
    }
    rt = Runtimes(root, environ=env)
    t = time.monotonic()
    print(rt.prepare(base_runtime="vibe", options={"minimal": True}))
    print(f"minimal base build: {time.monotonic() - t:.2f} s")

    boots: list[float] = []
    real_boot = launch.boot

    def timed_boot(plan, folder):  # type: ignore[no-untyped-def]
        booted = real_boot(plan, folder)
        boots.append(booted.boot_s)
        return booted

    launch.boot = timed_boot  # type: ignore[assignment]
    rows = []
    try:
        for i in range(runs):
            t0 = time.monotonic()
            result = rt.execute("bench", command=["true"])
            total = time.monotonic() - t0
            assert result.exit_code == 0, result.error_message()
            rows.append((boots[-1], total))
            label = "first (clone included)" if i == 0 else f"later #{i}"
            print(f"{label:24} boot {boots[-1]:5.2f} s  whole run {total:5.2f} s")
    finally:
        launch.boot = real_boot  # type: ignore[assignment]
    later = rows[1:]
    if later:
        print(
            f"later cold runs, median: boot {statistics.median(r[0] for r in later):.2f} s, "
            f"whole run {statistics.median(r[1] for r in later):.2f} s "
            f"(seed's vibe: ~5 s first, ~2 s after; warm runs: bench/warm.py)"
        )
    disk = root / "data" / "vibe-images" / "bench.raw"
    st = disk.stat()
    print(
        f"group disk: {st.st_size / 2**20:.0f} MB apparent, {st.st_blocks * 512 / 2**20:.1f} MB "
        f"allocated (seed: 3 GB per group)"
    )
    shutil.rmtree(root.parent, ignore_errors=True)


def bench_boots(n: int, tsc_fix: bool) -> None:
    from nanoclaw_runtime_vibe.qemu import accel, kernel, launch

    images = Path(tempfile.mkdtemp(prefix="vibe-qemu-boots-"))
    files = kernel.ensure_kernel_dir(images)
    qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
    host = accel.host_info(qemu, files, "tcg")
    append = [*launch.BASE_APPEND, "quiet", "nanoclaw.probe"]
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
    shutil.rmtree(images, ignore_errors=True)


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
