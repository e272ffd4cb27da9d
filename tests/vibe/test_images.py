"""The image lifecycle on real files: create on first use, reset, stats, names, the API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe import cow, images, script
from nanoclaw_runtime_vibe.settings import VibeSettings

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import Project

from .conftest import MiB, VibeProject, make_sparse


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Project, VibeSettings, Path]:
    project = Project(root=tmp_path)
    (tmp_path / "groups" / "dev").mkdir(parents=True)
    folder = tmp_path / "data" / "vibe-images"
    folder.mkdir(parents=True)
    return project, VibeSettings(), folder


def test_first_use_clones_then_keeps_then_reset(setup) -> None:
    project, settings, folder = setup
    make_sparse(folder / "base.raw", 256 * MiB, 4)
    first = images.ensure_group_disk(project, settings, "dev")
    assert first.disk == folder / "dev.raw" and first.clone is not None
    (folder / "dev.raw").open("r+b").write(b"group state")
    again = images.ensure_group_disk(project, settings, "dev")
    assert again.clone is None
    assert (folder / "dev.raw").read_bytes()[:11] == b"group state"
    removed = images.reset_group_disk(project, settings, "dev")
    assert len(removed) == 1 and "dev.raw" in removed[0]
    assert not (folder / "dev.raw").exists() and (folder / "base.raw").exists()
    assert images.reset_group_disk(project, settings, "dev") == []


def test_custom_base_per_group(setup) -> None:
    project, _, folder = setup
    make_sparse(folder / "base.raw", 16 * MiB, 1, seed=1)
    make_sparse(folder / "custom-dev.raw", 16 * MiB, 1, seed=2)
    settings = VibeSettings(base_image="custom-dev.raw")
    ensured = images.ensure_group_disk(project, settings, "dev")
    assert ensured.base.name == "custom-dev.raw"
    assert ensured.disk.read_bytes() == (folder / "custom-dev.raw").read_bytes()


@pytest.mark.parametrize("name", ["../base.raw", "a/b.raw", "..", ".hidden.raw", ""])
def test_base_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        VibeSettings(base_image=name)


def test_missing_base_message(setup) -> None:
    project, settings, folder = setup
    with pytest.raises(UserError) as info:
        images.ensure_group_disk(project, settings, "dev")
    message = str(info.value)
    assert "nanoclaw-runtimes prepare --base vibe" in message and "cp " in message
    assert str(folder / "base.raw") in message
    assert os.listdir(folder) == []


def test_group_named_like_its_base_is_refused(setup) -> None:
    project, settings, folder = setup
    make_sparse(folder / "base.raw", MiB)
    with pytest.raises(UserError, match="as its own disk"):
        images.ensure_group_disk(project, settings, "base")


def test_stats_rows(setup) -> None:
    project, settings, folder = setup
    make_sparse(folder / "base.raw", 3 * 2**30, 8)
    make_sparse(folder / "custom.raw", 64 * MiB)
    images.ensure_group_disk(project, settings, "dev")
    (folder / ".dev.raw.partial-999999999-abcd").write_bytes(b"x")
    (folder / "notes.txt").write_text("ignored")
    rows = {os.path.basename(r.path): r for r in images.image_stats(project, settings)}
    assert set(rows) == {"base.raw", "custom.raw", "dev.raw", ".dev.raw.partial-999999999-abcd"}
    dev, base = rows["dev.raw"], rows["base.raw"]
    assert (dev.kind, dev.group) == ("disk", "dev") and (base.kind, base.group) == ("base", None)
    assert base.apparent_mb == pytest.approx(3072) and 8 <= base.allocated_mb < 12
    assert dev.allocated_mb < 12 and dev.modified is not None
    assert rows["custom.raw"].kind == "base" and rows[".dev.raw.partial-999999999-abcd"].kind == (
        "partial"
    )


def test_api_reset_and_stats(vproject: VibeProject) -> None:
    from nanoclaw_runtime_vibe import get_vibe_image_stats, reset_vibe_image

    os.environ.update({k: v for k, v in vproject.env.items() if k != "PATH"})
    try:
        vproject.base()
        vproject.group("dev")
        vproject.runtimes().prepare("dev")
        rows = get_vibe_image_stats(root=vproject.root)
        assert {(r.kind, r.group) for r in rows} == {("base", None), ("disk", "dev")}
        assert all(r.runtime == "vibe" for r in rows)
        assert reset_vibe_image("dev", root=vproject.root)
        assert not (vproject.images / "dev.raw").exists()
    finally:
        for k in vproject.env:
            if k != "PATH":
                os.environ.pop(k, None)


def test_script_is_typable_and_hides_its_markers() -> None:
    text = script.render(agent=["node", "/app/dist/index.js"])
    script.check_typable(text)
    for marker in ("---NANOCLAW_EXIT_STATUS---:", "VIBE_SCRIPT_EOF", "---NANOCLAW_OUTPUT_START"):
        assert marker not in text
    assert "\t" not in text and "input.json" in text and "poweroff" in text
    with pytest.raises(script.ScriptError, match="VIBE_SCRIPT_EOF"):
        script.render(agent=["echo", "VIBE_SCRIPT_EOF"])
    with pytest.raises(script.ScriptError, match="printable ASCII"):
        script.render(agent=["echo", "a\tb"])


def test_stale_temp_of_a_live_process_is_kept(tmp_path: Path) -> None:
    final = tmp_path / "dev.raw"
    live = tmp_path / f".dev.raw{cow.TEMP_TAG}{os.getpid()}-0000"
    dead = tmp_path / f".dev.raw{cow.TEMP_TAG}999999999-0000"
    live.write_bytes(b"")
    dead.write_bytes(b"")
    assert cow.remove_stale_temps(final) == [dead]
    assert live.exists()
