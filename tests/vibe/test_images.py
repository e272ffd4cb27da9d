"""The disk lifecycle through the runtime's hooks: clone on first use, refusals that keep every
disk its group's own, reset, stats that tell the truth, and a full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe import cow, images
from nanoclaw_runtime_vibe.settings import VibeSettings

import nanoclaw_runtimes_core as nc

from .conftest import MiB, VibeProject, make_sparse, wait_for


def prepare(vp: VibeProject, folder: str = "dev") -> str | None:
    return vp.runtimes().prepare(folder)


def test_first_use_clones_then_keeps_then_reset_removes(vproject: VibeProject) -> None:
    vproject.base_image(data_mib=4)
    vproject.group("dev")
    summary = prepare(vproject)
    assert summary is not None and "cloned" in summary and "dev.raw" in summary
    disk = vproject.images / "dev.raw"
    first = disk.stat()
    assert prepare(vproject) is None  # already there: nothing done
    assert disk.stat().st_ino == first.st_ino
    removed = vproject.runtimes().reset("dev")
    assert any("removed" in line and "dev.raw" in line for line in removed)
    assert not disk.exists()
    assert vproject.runtimes().reset("dev") == []


def test_reset_refuses_while_a_vm_holds_the_disk(vproject: VibeProject) -> None:
    import fcntl

    vproject.base_image()
    vproject.group("dev")
    prepare(vproject)
    disk = vproject.images / "dev.raw"
    fd = os.open(images.disk_lock_path(disk), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(nc.UserError, match="still in use"):
            vproject.runtimes().reset("dev")
        assert disk.exists()
    finally:
        os.close(fd)
    vproject.runtimes().reset("dev")
    assert not disk.exists()


@pytest.mark.parametrize("name", ["other.raw", "dev.raw", "OTHER.raw"])
def test_a_vibe_image_that_is_a_groups_disk_is_refused(vproject: VibeProject, name: str) -> None:
    vproject.base_image()
    vproject.group("other")
    vproject.group("dev", {"containerConfig": {"vibeImage": name}})
    (vproject.images / "other.raw").write_bytes(b"other group's state")
    with pytest.raises(nc.UserError) as info:
        prepare(vproject)
    text = str(info.value)
    assert "containerConfig.vibeImage / VIBE_BASE_IMAGE" in text and "disk of group" in text
    assert "prepare --base vibe" in text  # the fix
    assert not (vproject.images / "dev.raw").exists()
    assert (vproject.images / "other.raw").read_bytes() == b"other group's state"


def test_a_base_that_is_a_link_to_a_groups_disk_is_refused(vproject: VibeProject) -> None:
    vproject.group("other")
    vproject.group("dev", {"containerConfig": {"vibeImage": "shared.raw"}})
    (vproject.images / "other.raw").write_bytes(b"other group's state")
    os.link(vproject.images / "other.raw", vproject.images / "shared.raw")
    with pytest.raises(nc.UserError, match="same file as the disk of group 'other'"):
        prepare(vproject)
    (vproject.images / "shared.raw").unlink()
    (vproject.images / "shared.raw").symlink_to("other.raw")
    with pytest.raises(nc.UserError, match="same file as the disk of group 'other'"):
        prepare(vproject)
    assert not (vproject.images / "dev.raw").exists()


def test_a_symlinked_disk_is_refused_and_its_target_untouched(vproject: VibeProject) -> None:
    base = vproject.base_image()
    vproject.group("dev")
    target = vproject.base / "elsewhere.raw"
    target.write_bytes(b"not yours")
    (vproject.images / "dev.raw").symlink_to(target)
    with pytest.raises(nc.UserError) as info:
        vproject.ask("dev", "hi")
    assert "symbolic link" in str(info.value) and "rm " in str(info.value)
    assert target.read_bytes() == b"not yours" and base.exists()


def test_a_hard_linked_disk_or_the_base_itself_is_refused(vproject: VibeProject) -> None:
    base = vproject.base_image()
    vproject.group("dev")
    os.link(base, vproject.images / "dev.raw")  # the base's inode as the group's disk
    with pytest.raises(nc.UserError, match="hard link"):
        prepare(vproject)
    (vproject.images / "dev.raw").unlink()
    prepare(vproject)
    os.link(vproject.images / "dev.raw", vproject.base / "copy.raw")
    with pytest.raises(nc.UserError, match="1 other hard link"):
        prepare(vproject)


def test_missing_base_says_how_to_make_one(vproject: VibeProject) -> None:
    vproject.group("dev")
    with pytest.raises(nc.UserError) as info:
        prepare(vproject)
    assert "prepare --base vibe" in str(info.value) and "base.raw" in str(info.value)
    assert not (vproject.images / "dev.raw").exists()


def test_base_metadata_gives_the_default_agent(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    make_sparse(base, MiB)
    assert images.default_agent(base) == ["python3", nc.EXAMPLE_AGENT]
    images.write_base_info(base, agent=["node", "/app/dist/index.js"], kind="test")
    assert images.default_agent(base) == ["node", "/app/dist/index.js"]
    info = json.loads(images.info_path(base).read_text())
    assert info["kind"] == "test" and info["image"]["inode"] == base.stat().st_ino
    base.unlink()
    make_sparse(base, MiB)  # another file now: the metadata no longer describes it
    assert images.default_agent(base) == ["python3", nc.EXAMPLE_AGENT]
    images.info_path(base).write_text("{not json")
    with pytest.raises(nc.UserError, match="not valid JSON"):
        images.default_agent(base)


def test_stats_rows_say_what_each_file_is(vproject: VibeProject) -> None:
    vproject.base_image(data_mib=2)
    images.write_base_info(vproject.images / "base.raw", agent=["a"], kind="minimal")
    vproject.group("dev")
    vproject.group("elsewhere", {"containerConfig": {"runtime": "vibe"}})
    prepare(vproject)
    make_sparse(vproject.images / "gone.raw", MiB)  # no groups/gone
    make_sparse(vproject.images / "custom.img", MiB)
    (vproject.images / ".custom.img.partial-1-dead").write_bytes(b"x")
    rows = vproject.runtimes().stats(["vibe"])
    by_path = {Path(r.path).name: r for r in rows if r.path}
    assert not (vproject.images / ".custom.img.partial-1-dead").exists()  # swept first
    assert ".custom.img.partial-1-dead" not in by_path
    assert by_path["dev.raw"].kind == "disk" and by_path["dev.raw"].group == "dev"
    assert by_path["dev.raw"].apparent_mb == 64 and by_path["dev.raw"].allocated_mb >= 2
    base = by_path["base.raw"]
    assert base.kind == "base" and "configured base" in base.note
    assert base.details["baseKind"] == "minimal"
    assert "removed group" in by_path["gone.raw"].note
    assert by_path["custom.img"].kind == "base"
    assert "base.raw.info.json" not in by_path and ".dev.raw.lock" not in by_path


SLOW_PREPARE = textwrap.dedent(
    """
    import os, sys, time
    from nanoclaw_runtime_vibe import cow
    real = cow._Copier.range
    def slow(self, offset, length):
        real(self, offset, length)
        time.sleep(0.3)
    cow._Copier.range = slow
    import nanoclaw_runtimes_core as nc
    env = dict(os.environ)
    nc.Runtimes(sys.argv[1], environ=env).prepare("dev")
    """
)


def test_a_killed_prepare_leaves_a_partial_stats_reports_then_sweeps(vproject: VibeProject) -> None:
    vproject.base_image(size=512 * MiB, data_mib=40)
    vproject.group("dev")
    env = {**os.environ, **vproject.env}
    child = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, str(vproject.root)], env=env)
    try:

        def partial() -> list[Path]:
            return [p for p in vproject.images.iterdir() if cow.PARTIAL_TAG in p.name]

        wait_for(lambda: partial() and partial()[0].stat().st_blocks > 0)
        rows = [r for r in vproject.runtimes().stats(["vibe"]) if r.kind == "partial"]
        assert len(rows) == 1 and rows[0].group == "dev"
        assert "in progress" in rows[0].note and rows[0].details["state"] == "live"
        assert partial()  # a live one is never swept
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (left,) = partial()
    assert not (vproject.images / "dev.raw").exists()  # no half image under the real name
    rows = vproject.runtimes().stats(["vibe"])
    assert not left.exists()  # swept: its writer is dead
    assert [r.kind for r in rows] == ["base"]
    assert "cloned" in (prepare(vproject) or "")


def test_disk_full_is_exit_4_and_leaves_no_half_image(vproject: VibeProject) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs as the images folder")
    small = vproject.base / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        make_sparse(small / "base.raw", 1024 * MiB, 14)
        vproject.group("dev")
        with pytest.raises(nc.NoSpace) as info:
            vproject.runtimes(VIBE_IMAGES_DIR=str(small)).prepare("dev")
        assert info.value.exit_status == nc.ExitStatus.NO_SPACE == 4
        assert "no space left" in str(info.value)
        assert sorted(os.listdir(small)) == ["base.raw"]  # no image, no partial
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_the_boot_key_follows_what_shapes_the_vm(vproject: VibeProject) -> None:
    vproject.base_image()
    vproject.group("dev")

    def key(**env: str) -> str:
        rt = vproject.runtimes(**env)
        plan = rt.plan("dev")
        request = nc.ExecuteRequest(
            project=rt.project, group=plan.group, settings=plan.settings,
            mounts=plan.mounts.mounts, masks=plan.mounts.masks, timeout_ms=1000,
        )  # fmt: skip
        return images.boot_key(request, plan.settings, "vibe")

    plain = key()
    assert key() == plain
    assert key(VIBE_KEEP_WARM="1000") == plain  # how long it stays warm is not its shape
    assert key(VIBE_RAM="640") != plain
    assert key(VIBE_NETWORK="true") != plain
    assert key(VIBE_NETWORK_MODE="nat") != plain


def test_images_dir_is_resolved_against_the_root() -> None:
    project = nc.Project(root=Path("/p"))
    assert images.images_dir(project, VibeSettings()) == Path("/p/data/vibe-images")
