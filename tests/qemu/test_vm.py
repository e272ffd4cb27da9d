"""Real VMs: the vibe runtime's QEMU engine booting persistent per-group ext4 disks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .conftest import QemuProject, needs_qemu, vm_processes

pytestmark = [pytest.mark.slow, needs_qemu]


def results(result) -> list[str]:
    return [o.result for o in result.outputs]


def test_persistence_reset_and_isolation(qproject: QemuProject) -> None:
    qproject.group("alpha")
    qproject.group("beta")
    first = qproject.agent("alpha", "persist")
    assert first.status == "success", first.error_message()
    assert results(first) == ["group=alpha counter=1 first=alpha block=1"]

    second = qproject.agent("alpha", "persist")
    assert results(second) == ["group=alpha counter=2 first=alpha block=1"]

    other = qproject.agent("beta", "persist")
    assert results(other) == ["group=beta counter=1 first=beta block=1"]

    removed = qproject.runtimes().reset("alpha")
    assert any("alpha.raw" in r for r in removed)
    assert not (qproject.images / "alpha.raw").exists()
    again = qproject.agent("alpha", "persist")
    assert results(again) == ["group=alpha counter=1 first=alpha block=1"]
    # the group disk costs its data, not its 3 GiB
    disk = qproject.images / "alpha.raw"
    assert disk.stat().st_size == 3 * 2**30
    assert disk.stat().st_blocks * 512 < 64 * 2**20


def test_exit_status_and_output_blocks(qproject: QemuProject) -> None:
    qproject.group("dev")
    seen: list[str] = []

    from nanoclaw_runtimes_core.models import OutputSink

    class Sink(OutputSink):
        def on_output(self, output):  # type: ignore[no-untyped-def]
            seen.append(output.result)

    result = qproject.agent("dev", "noisy blocks 3 exit 7", sink=Sink())
    assert result.exit_code == 7
    assert result.status == "error"
    assert "code 7" in (result.error_message() or "")
    expected = [f"group=dev counter=0 first=none block={i}" for i in (1, 2, 3)]
    assert results(result) == expected
    assert seen == expected  # streamed to the sink as they came


def test_workspace_both_ways_and_read_only_enforced_on_host(
    qproject: QemuProject, tmp_path: Path
) -> None:
    ws = qproject.group("dev")
    (ws / "from-host.txt").write_text("written on the host\n")
    script = textwrap.dedent(
        """\
        cat /workspace/group/from-host.txt
        echo "written in the guest" > /workspace/group/from-guest.txt
        # a read-only share stays read-only even if the guest remounts it read-write
        mount -o remount,rw /workspace/global 2>/dev/null
        if echo x > /workspace/global/guest-wrote.txt 2>/dev/null; then echo RO-BROKEN; fi
        echo "cwd=$(pwd)"
        exit 3
        """
    )
    out: list[bytes] = []

    from nanoclaw_runtimes_core.models import OutputSink

    class Sink(OutputSink):
        def on_stdout(self, data: bytes) -> None:
            out.append(data)

    result = qproject.runtimes().execute("dev", command=["sh", "-c", script], sink=Sink())
    text = b"".join(out).decode()
    assert result.exit_code == 3, (result.error_message(), text)
    assert "written on the host" in text
    assert "cwd=/workspace/group" in text
    assert "RO-BROKEN" not in text
    assert (ws / "from-guest.txt").read_text() == "written in the guest\n"
    assert not (qproject.root / "groups" / "global" / "guest-wrote.txt").exists()


def test_timeout_leaves_no_vm(qproject: QemuProject) -> None:
    ws = qproject.group("slow")
    started = time.monotonic()
    result = qproject.agent("slow", "sleep 300", timeout_ms=20_000)
    assert result.timed_out
    assert result.status == "error"
    assert "timed out" in (result.error_message() or "")
    assert (ws / "started").exists()  # it did boot and run the agent
    assert time.monotonic() - started < 90
    assert vm_processes(str(qproject.root)) == []


def test_one_group_runs_never_overlap_two_groups_do(qproject: QemuProject) -> None:
    for g in ("one", "two"):
        qproject.group(g)
    live: list[list[str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            disks = [
                part
                for line in vm_processes(str(qproject.images))
                if "qemu-system" in line
                for part in line.split(",")
                if part.startswith("file=")
            ]
            live.append(disks)
            time.sleep(0.05)

    def run(group: str, errors: list) -> None:
        r = qproject.agent(group, "persist sleep 3")
        if r.status != "success":
            errors.append(r.error_message())

    watcher = threading.Thread(target=watch)
    watcher.start()
    errors: list = []
    threads = [threading.Thread(target=run, args=(g, errors)) for g in ("one", "one", "two")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
    finally:
        stop.set()
        watcher.join()
    assert errors == []
    one = f"file={qproject.images / 'one.raw'}"
    two = f"file={qproject.images / 'two.raw'}"
    assert all(s.count(one) <= 1 for s in live), "one disk was booted twice at once"
    assert sum(1 for s in live if one in s) > 0
    assert any(one in s and two in s for s in live), "the two groups never ran side by side"
    counter = qproject.agent("one", "persist")
    assert results(counter) == ["group=one counter=3 first=one block=1"]


def test_same_disk_is_locked_while_a_vm_runs(qproject: QemuProject) -> None:
    from nanoclaw_runtime_vibe.qemu.disklock import DiskLock

    from nanoclaw_runtimes_core.errors import UserError

    qproject.group("dev")
    qproject.runtimes().prepare("dev")
    disk = qproject.images / "dev.raw"
    busy = pytest.raises(UserError, match="in use by another VM")
    with DiskLock(disk), busy, DiskLock(disk, wait_s=0.2):
        pass
    with DiskLock(disk, wait_s=0.2):
        pass


KILLER = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.qemu.conftest import QemuProject
p = QemuProject(Path({root!r}))
p.agent("dev", "persist sleep 300")
"""


def test_sigkill_of_host_leaves_no_vm_and_a_usable_disk(qproject: QemuProject) -> None:
    ws = qproject.group("dev")
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER.format(repo=repo, root=str(qproject.root))],
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 120
        while not (ws / "started").exists():
            assert proc.poll() is None, "the host process ended early"
            assert time.monotonic() < deadline, "the guest never started the agent"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 15
    while vm_processes(str(qproject.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert vm_processes(str(qproject.root)) == []
    after = qproject.agent("dev", "persist")
    assert after.status == "success", after.error_message()
    assert results(after) == ["group=dev counter=2 first=dev block=1"]
    fsck = subprocess.run(
        ["e2fsck", "-fn", str(qproject.images / "dev.raw")], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
