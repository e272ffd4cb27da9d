"""File access inside folders a sandbox can write: nothing it planted is followed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.safefs import Repair, SafeDir, UnsafeEntry, disk_usage, remove_tree


def _read(folder: Path, name: str, limit: int = 1024) -> bytes | None:
    with SafeDir.open(folder) as d:
        return d.read(name, limit)


def test_regular_files_are_read_and_missing_ones_are_none(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"hello")
    assert _read(tmp_path, "a") == b"hello"
    assert _read(tmp_path, "missing") is None


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero", "inside"])
def test_a_planted_link_is_never_followed(tmp_path: Path, target: str) -> None:
    (tmp_path / "inside").write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeEntry, match="is a symbolic link; the host never follows one"):
        _read(tmp_path, "link")


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    errors: list[BaseException] = []

    def read() -> None:
        try:
            _read(tmp_path, "pipe")
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO hung"
    assert isinstance(errors[0], UnsafeEntry) and "is a FIFO, not a regular file" in str(errors[0])


def test_a_folder_and_a_large_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(UnsafeEntry, match="is a folder, not a regular file"):
        _read(tmp_path, "sub")
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(UnsafeEntry, match="is 2000 bytes; at most 1024 are read"):
        _read(tmp_path, "big")


def test_the_folder_itself_may_not_be_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeEntry, match="not a folder"):
        SafeDir.open(tmp_path / "alias")


def test_a_link_planted_in_place_of_a_folder_is_removed_and_reported(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    top = tmp_path / "top"
    top.mkdir()
    (top / "logs").symlink_to(outside)
    repairs: list[Repair] = []
    with SafeDir.open(top) as d, d.child("logs", repairs=repairs) as logs:
        logs.write_new("x.log", b"entry")
    assert (top / "logs").is_dir() and not (top / "logs").is_symlink()
    assert not list(outside.iterdir()), "the write went through the planted link"
    assert [r.what for r in repairs] == [
        f"removed a symbolic link planted in place of a folder (it pointed to {outside})"
    ]


def test_a_file_planted_in_place_of_a_folder_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "messages").write_text("planted")
    repairs: list[Repair] = []
    with SafeDir.open(tmp_path) as d:
        d.child("messages", repairs=repairs).close()
    assert (tmp_path / "messages").is_dir()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("messages.planted-")]
    assert len(aside) == 1 and aside[0].read_text() == "planted"
    assert "moved a file found in place of a folder to messages.planted-" in str(repairs[0])


def test_writes_never_go_through_an_existing_entry(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "new").symlink_to(victim)
    with SafeDir.open(tmp_path) as d:
        with pytest.raises(FileExistsError):
            d.write_new("new", b"evil")
        d.replace_file("new", b"fresh")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "new").is_symlink() and (tmp_path / "new").read_text() == "fresh"


def test_remove_tree_and_disk_usage_never_follow_links(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_bytes(b"x" * 5000)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"y" * 100)
    (tree / "link").symlink_to(keep)
    usage = disk_usage(tree)
    assert usage.apparent < 5000 and usage.files == 3
    assert remove_tree(tree) is True and not tree.exists()
    assert (keep / "file").exists()
    assert remove_tree(tree) is False
