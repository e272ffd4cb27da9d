"""Benchmark: the vibe runtime's stats over 100 group images (goal: under 50 ms).

Run: ``python bench/vibe_stats.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from nanoclaw_runtime_vibe.images import image_stats
from nanoclaw_runtime_vibe.settings import VibeSettings

import nanoclaw_runtimes_core as nc

GROUPS = 100


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = root / "data" / "vibe-images"
        images.mkdir(parents=True)
        with open(images / "base.raw", "wb") as f:
            f.truncate(3 * 2**30)
        for i in range(GROUPS):
            (root / "groups" / f"group-{i:03d}").mkdir(parents=True)
            with open(images / f"group-{i:03d}.raw", "wb") as f:
                f.truncate(3 * 2**30)
                f.write(b"x" * 4096)
        project, settings = nc.Project(root=root), VibeSettings()
        groups = tuple(
            nc.Group(folder=p.name, path=p, is_main=False)
            for p in sorted((root / "groups").iterdir())
        )
        (images / ".group-000.raw.partial-1-dead").write_bytes(b"x")  # swept on the first call
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            rows = image_stats(project, settings, groups)
            times.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == GROUPS + 1
        print(
            f"stats over {GROUPS} group images + 1 base: median {statistics.median(times):.2f} ms,"
            f" worst {max(times):.2f} ms (goal < 50 ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
