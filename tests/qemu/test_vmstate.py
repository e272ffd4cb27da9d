"""A VM's end, as the engine sees it (qemu/vmstate.py): no QEMU needed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from nanoclaw_runtime_vibe.qemu import vmstate


def test_a_vm_is_gone_only_when_its_watcher_has_exited(tmp_path: Path) -> None:
    # At a clean power-off the watcher removes the folder, its owner file first, while it
    # still holds the disk's lock: the VM is not gone until the watcher is.
    folder = tmp_path / "vm"
    folder.mkdir()
    watcher = subprocess.Popen(["sleep", "0.6"])
    try:
        vmstate.write_json(folder / vmstate.META, {"pid": watcher.pid})
        assert not vmstate.alive(folder)  # no owner file: the watcher already unlinked it
        assert not vmstate.wait_gone(folder, 0.1)
        started = time.monotonic()
        assert vmstate.wait_gone(folder, 10.0)
        assert time.monotonic() - started >= 0.3
    finally:
        watcher.kill()
        watcher.wait()


def test_removing_a_folder_its_watcher_removes_too_is_quiet(tmp_path: Path) -> None:
    folder = tmp_path / "vm"
    (folder / "fs").mkdir(parents=True)
    (folder / "fs" / "a.sock").write_text("")
    vmstate.remove(folder)
    assert not folder.exists()
    vmstate.remove(folder)  # already gone (the watcher won): nothing to do, no error
