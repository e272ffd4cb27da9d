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

from nanoclaw_runtimes_core.models import Project

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
        project, settings = Project(root=root), VibeSettings()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            rows = image_stats(project, settings)
            times.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == GROUPS + 1
        print(
            f"stats over {GROUPS} group images + 1 base: median {statistics.median(times):.2f} ms,"
            f" worst {max(times):.2f} ms (goal < 50 ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
