"""Benchmark: cloning a 3 GiB sparse base with 300 MiB of data into a group disk.

Prints time and allocated bytes for: reflink (on an XFS loop file system, needs root),
the runtime's sparse copy, a naive byte copy, and ``cp --sparse=always``. Goals: sparse
within 1.1x of cp; reflink in constant time. Run: ``python bench/vibe_clone.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nanoclaw_runtime_vibe import cow

MiB, GiB = 2**20, 2**30
SIZE, DATA_MIB, REPEAT = 3 * GiB, 300, 3


def make_base(path: Path) -> None:
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        step = SIZE // DATA_MIB
        for i in range(DATA_MIB):
            f.seek(i * step)
            f.write(rng.randbytes(MiB))
        os.fsync(f.fileno())


def naive(src: Path, dst: Path) -> None:
    with open(src, "rb") as a, open(dst, "wb") as b:
        while chunk := a.read(8 * MiB):
            b.write(chunk)
        os.fsync(b.fileno())


def cp_sparse(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)  # the runtime fsyncs too: compare like with like
    os.close(fd)


def measure(name: str, fn: Callable[[Path, Path], object], src: Path, folder: Path) -> float:
    times = []
    for i in range(REPEAT):
        dst = folder / f"{name}-{i}.raw"
        subprocess.run(["sync"], check=True)
        t0 = time.perf_counter()
        fn(src, dst)
        times.append(time.perf_counter() - t0)
        allocated = os.stat(dst).st_blocks * 512
        dst.unlink()
    best = min(times)
    print(
        f"{name:<22} {best * 1000:9.0f} ms (median {statistics.median(times) * 1000:.0f})"
        f"   allocated {allocated / MiB:8.1f} MiB"
    )
    return best


def run_on(folder: Path, label: str, *, with_reflink: bool) -> None:
    print(f"\n== {label}: {folder}")
    src = folder / "base.raw"
    make_base(src)
    allocated = os.stat(src).st_blocks * 512 / MiB
    print(f"base: apparent {SIZE / MiB:.0f} MiB, allocated {allocated:.0f} MiB")
    if with_reflink:
        measure("reflink (FICLONE)", lambda s, d: cow.clone_image(s, d), src, folder)
    sparse = measure(
        "sparse copy (runtime)",
        lambda s, d: cow.clone_image(s, d, allow_reflink=False),
        src,
        folder,
    )
    cp = measure("cp --sparse=always", cp_sparse, src, folder)
    measure("naive byte copy", naive, src, folder)
    print(f"sparse / cp = {sparse / cp:.2f}x (goal <= 1.1x)")
    src.unlink()


def main() -> int:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        run_on(Path(tmp), "default file system", with_reflink=False)
    if os.geteuid() == 0 and shutil.which("mkfs.xfs"):
        with tempfile.TemporaryDirectory() as tmp:
            img, mnt = Path(tmp) / "xfs.img", Path(tmp) / "mnt"
            mnt.mkdir()
            with open(img, "wb") as f:
                f.truncate(8 * GiB)
            subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(img)], check=True)
            subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
            try:
                run_on(mnt, "XFS with reflink (loop)", with_reflink=True)
            finally:
                subprocess.run(["umount", str(mnt)], check=False)
    else:
        print("\n(reflink skipped: needs root and mkfs.xfs for an XFS loop file system)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
