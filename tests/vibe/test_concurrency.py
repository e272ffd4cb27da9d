"""One group never boots its disk twice; groups run side by side; reset waits for a run."""

from __future__ import annotations

import itertools
import json
import threading
import time

from nanoclaw_runtimes_core.models import ContainerInput

from .conftest import Collect, VibeProject, needs_bwrap, wait_for

pytestmark = needs_bwrap


def run_in_thread(vp: VibeProject, folder: str, prompt: str, results: list) -> threading.Thread:
    def target() -> None:
        inp = ContainerInput(prompt=prompt, group_folder=folder, chat_jid="c", is_main=False)
        results.append(vp.runtimes().execute(folder, input=inp, sink=Collect()))

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_runs_of_one_group_never_overlap(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    vproject.runtimes().prepare("dev")
    results: list = []
    threads = [run_in_thread(vproject, "dev", "persist sleep 0.3", results) for _ in range(4)]
    for t in threads:
        t.join(timeout=180)
    assert [r.status for r in results] == ["success"] * 4
    spans = sorted(vproject.intervals(vproject.images / "dev.raw"))
    assert len(spans) == 4
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert vproject.overlaps() == []
    assert sorted(json.loads(r.outputs[0].result)["runs"] for r in results) == [
        1,
        2,
        3,
        4,
    ]  # every run saw the one before: nothing lost to a concurrent boot


def test_different_groups_run_side_by_side(vproject: VibeProject) -> None:
    vproject.base()
    for g in ("one", "two"):
        vproject.group(g)
        vproject.runtimes().prepare(g)
    results: list = []
    threads = [run_in_thread(vproject, g, "sleep 3", results) for g in ("one", "two")]
    for t in threads:
        t.join(timeout=180)
    assert [r.status for r in results] == ["success"] * 2
    (a,) = vproject.intervals(vproject.images / "one.raw")
    (b,) = vproject.intervals(vproject.images / "two.raw")
    assert max(a[0], b[0]) < min(a[1], b[1])  # they overlapped in time


def test_reset_during_a_run_waits_for_it(vproject: VibeProject) -> None:
    vproject.base()
    vproject.group("dev")
    results: list = []
    thread = run_in_thread(vproject, "dev", "persist sleep 2", results)
    wait_for(lambda: any(b["event"] == "start" for b in vproject.boots()))
    removed = vproject.runtimes().reset("dev")
    reset_done = time.time()
    thread.join(timeout=180)
    (span,) = vproject.intervals(vproject.images / "dev.raw")
    assert span[1] <= reset_done  # the VM had powered off before the disk was deleted
    assert results[0].status == "success" and removed
    assert not (vproject.images / "dev.raw").exists()
