"""The installed runtimes' entry points are remembered between runs, and rescanned on change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import entrypoints
from nanoclaw_runtimes_core.entrypoints import Distribution, RuntimeEntryPoint


def test_the_scan_is_cached_and_redone_when_the_import_path_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    found = [RuntimeEntryPoint("x", "x.plugin", Distribution("nc-x", "1.0"))]
    scans: list[int] = []
    monkeypatch.setattr(entrypoints, "_scan", lambda: scans.append(1) or list(found))
    assert entrypoints.runtime_entry_points() == found
    cache = tmp_path / "cache" / "nanoclaw-runtimes" / "entry-points.json"
    assert json.loads(cache.read_text())["entryPoints"][0]["dist"] == "nc-x"
    assert entrypoints.runtime_entry_points() == found and len(scans) == 1
    extra = tmp_path / "site"
    extra.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(extra)])
    assert entrypoints.runtime_entry_points() == found and len(scans) == 2
    (extra / "new-dist.dist-info").mkdir()  # an install changes the folder's time
    import os
    import time

    os.utime(extra, (time.time() + 5, time.time() + 5))
    entrypoints.runtime_entry_points()
    assert len(scans) == 3
    cache.write_text("{broken")
    assert entrypoints.runtime_entry_points() == found and len(scans) == 4
