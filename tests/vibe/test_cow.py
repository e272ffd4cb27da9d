"""Copy-on-write clones on real files: sparse copy, reflink on XFS, and every way to fail."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe import cow

import nanoclaw_runtimes_core as nc

from .conftest import MiB, make_sparse, wait_for

GiB = 2**30


def digest(path: Path) -> str:
    """A digest of the content, reading only the allocated extents (holes read as zeros): the
    non-zero 4 KiB blocks and where they are."""
    h = hashlib.sha256()
    block = 4096
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        h.update(str(size).encode())
        seen = -1
        for offset, length in cow.data_extents(fd, size):
            pos = max(offset // block * block, seen + 1)
            while pos < offset + length:
                chunk = os.pread(fd, block, pos)
                if chunk.count(0) != len(chunk):
                    h.update(f"{pos}:".encode() + chunk)
                seen = pos
                pos += block
    finally:
        os.close(fd)
    return h.hexdigest()


def test_sparse_clone_costs_the_data_not_the_apparent_size(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, 3 * GiB, 100)
    disk = tmp_path / "dev.raw"
    result = cow.clone_image(base, disk, allow_reflink=False)
    assert result.method == "sparse"
    assert 100 * MiB <= result.bytes_copied <= 110 * MiB  # extents round up a little
    assert disk.stat().st_size == 3 * GiB
    allocated = cow.allocated_bytes(disk)
    assert 95 * MiB <= allocated <= 130 * MiB, allocated / MiB
    assert digest(disk) == digest(base)
    assert sorted(os.listdir(tmp_path)) == ["base.raw", "dev.raw"]


def test_without_seek_data_it_still_writes_only_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, 256 * MiB, 8)
    monkeypatch.setattr(cow, "_seek_data_works", lambda fd: False)
    result = cow.clone_image(base, tmp_path / "g.raw", allow_reflink=False)
    assert result.method == "sparse-scan"
    assert cow.allocated_bytes(tmp_path / "g.raw") <= 12 * MiB
    assert digest(tmp_path / "g.raw") == digest(base)


def test_copy_file_range_refused_falls_back_to_pread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, 64 * MiB, 4)

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    result = cow.clone_image(base, tmp_path / "g.raw", allow_reflink=False)
    assert result.method == "sparse" and digest(tmp_path / "g.raw") == digest(base)


def test_interrupt_during_clone_leaves_nothing(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, 64 * MiB, 16)
    disk = tmp_path / "dev.raw"

    def progress(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cow.clone_image(base, disk, allow_reflink=False, progress=progress)
    assert not disk.exists()
    assert os.listdir(tmp_path) == ["base.raw"]


def test_a_partial_being_written_is_locked_a_dead_one_is_swept(tmp_path: Path) -> None:
    with cow.partial_file(tmp_path / "dev.raw") as part:
        assert part.path.name.startswith(".dev.raw.partial-")
        assert cow.leftover_state(part.path) == "live"
        assert cow.sweep_partials(tmp_path) == []  # never one in progress
    assert (tmp_path / "dev.raw").exists() and not part.path.exists()
    dead = tmp_path / ".x.raw.partial-1-abcd"
    dead.write_bytes(b"half")
    assert cow.leftover_state(dead) == "dead"
    assert cow.sweep_partials(tmp_path) == [dead] and not dead.exists()
    assert cow.leftover_state(tmp_path / "dev.raw") == "not-ours"


def test_a_build_folder_is_owner_locked_and_swept_only_when_its_owner_died(tmp_path: Path) -> None:
    target = tmp_path / "base.raw"
    with cow.build_folder(target) as work:
        assert work.name.startswith(".base.raw.build-") and work.is_dir()
        assert cow.sweep_partials(tmp_path) == []
        assert cow.leftover_state(work) == "live"
    assert not work.exists()
    left = tmp_path / ".base.raw.build-9-dead"
    left.mkdir()
    (left / ".owner").write_text("")
    assert cow.sweep_partials(tmp_path) == [left]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nanoclaw_runtime_vibe import cow
    def slow(n):
        time.sleep(0.5)
    cow.CHUNK = 1 << 20
    cow.clone_image(Path(sys.argv[1]), Path(sys.argv[2]), allow_reflink=False, progress=slow)
    """
)


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if cow.PARTIAL_TAG in p.name]


def test_kill_during_clone_leaves_no_half_image_and_its_partial_is_swept(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, 256 * MiB, 32)
    disk = tmp_path / "dev.raw"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(base), str(disk)])
    try:
        wait_for(
            lambda: bool(_partials(tmp_path)) and cow.allocated_bytes(_partials(tmp_path)[0]) > 0
        )
        (partial,) = _partials(tmp_path)
        assert cow.leftover_state(partial) == "live" and cow.sweep_partials(tmp_path) == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not disk.exists()  # never a half image under the real name
    assert cow.leftover_state(partial) == "dead"
    assert cow.sweep_partials(tmp_path) == [partial] and not partial.exists()


# --------------------------------------------------------------------------- real file systems


def _root_with(*tools: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a loop or tmpfs file system"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@contextlib.contextmanager
def mounted(args: list[str], target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(args)}): {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    reason = _root_with("mkfs.xfs", "mount")
    if reason:
        pytest.skip(reason)
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(1 * GiB)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs failed: {made.stderr.decode().strip()}")
    with mounted(["-o", "loop", str(image)], tmp_path / "xfs") as mnt:
        yield mnt


def test_reflink_on_xfs_shares_blocks(xfs: Path) -> None:
    base = xfs / "base.raw"
    make_sparse(base, 3 * GiB, 100)
    os.sync()
    before = shutil.disk_usage(xfs).used
    result = cow.clone_image(base, xfs / "dev.raw")
    os.sync()
    assert result.method == "reflink" and result.bytes_copied == 0
    assert shutil.disk_usage(xfs).used - before < 10 * MiB  # blocks shared, not copied
    assert digest(xfs / "dev.raw") == digest(base)
    with open(xfs / "dev.raw", "r+b") as f:  # writing the clone leaves the base alone
        f.write(b"changed")
    assert digest(xfs / "dev.raw") != digest(base)


def test_disk_full_during_clone_is_no_space_and_leaves_nothing(tmp_path: Path) -> None:
    reason = _root_with("mount")
    if reason:
        pytest.skip(reason)
    base = tmp_path / "base.raw"
    make_sparse(base, 3 * GiB, 100)
    with mounted(["-t", "tmpfs", "-o", "size=60m", "tmpfs"], tmp_path / "small") as small:
        disk = small / "dev.raw"
        with pytest.raises(nc.NoSpace) as info:
            cow.clone_image(base, disk)
        assert info.value.exit_status == 4
        assert "no space left" in str(info.value) and "nothing half-written" in str(info.value)
        assert os.listdir(small) == []  # no image, no partial
        assert shutil.disk_usage(small).used < 1 * MiB
