"""The installed runtimes' entry points are remembered between runs, and rescanned on change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nanoclaw_runtimes_core import entrypoints
from nanoclaw_runtimes_core.entrypoints import Distribution, RuntimeEntryPoint
from nanoclaw_runtimes_core.errors import PluginError


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


def test_a_runtime_missing_from_a_stale_cache_is_found_by_a_rescan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanoclaw_runtimes_core.plugins import Registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = [RuntimeEntryPoint("x", "x.plugin", Distribution("nc-x", "1.0"))]
    new = [*old, RuntimeEntryPoint("y", "y.plugin", Distribution("nc-y", "1.0"))]
    installed = [old]
    monkeypatch.setattr(entrypoints, "_scan", lambda: list(installed[0]))
    entrypoints.runtime_entry_points()  # cached: only x
    installed[0] = new  # installed since, in a way the cache key does not see
    registry = Registry()
    registry.load_entry_points()
    assert registry.names() == ["x"]
    with pytest.raises(PluginError, match=r"No module named 'y'"):
        registry.get("y")  # found by the rescan, then fails to import: not "unknown runtime"
    assert "y" in registry.names()


def test_each_runtime_selection_gets_its_own_default_registry() -> None:
    from nanoclaw_runtimes_core import plugins

    only_container = plugins.default_registry({"NANOCLAW_RUNTIMES_LOAD": "container"})
    only_vibe = plugins.default_registry({"NANOCLAW_RUNTIMES_LOAD": "vibe"})
    assert only_container is not only_vibe
    assert only_vibe.names() == ["vibe"] and only_container.names() == ["container"]
    assert plugins.default_registry({"NANOCLAW_RUNTIMES_LOAD": "vibe"}) is only_vibe
