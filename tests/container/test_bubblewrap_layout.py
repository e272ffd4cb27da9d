"""The pure parts of the bubblewrap engine: reachability, mask placement, option encoding."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from nanoclaw_runtime_container.engines import bwrap_host, bwrap_masks
from nanoclaw_runtime_container.engines.bwrap_layout import Layout

import nanoclaw_runtimes_core as nc


def mount(host: Path, at: str, readonly: bool = False) -> nc.Mount:
    return nc.Mount(host_path=host, container_path=at, readonly=readonly)


def mask(at: str, source: Path | None = None, folder: bool = False) -> nc.Mask:
    return nc.Mask(container_path=at, source=source, reason="test", folder=folder)


def test_reachable_follows_search_permission() -> None:
    top = Path(tempfile.mkdtemp(prefix="nc-reach-"))
    try:
        top.chmod(0o755)
        shut = top / "shut"
        (shut / "inside").mkdir(parents=True)
        shut.chmod(0o700)
        uid = 1_000_000_123
        assert bwrap_host.reachable(shut, uid, uid)  # the folder itself may be looked up
        assert not bwrap_host.reachable(shut / "inside", uid, uid)
        assert not bwrap_host.reachable(top / "missing", uid, uid)
        if os.geteuid() == 0:
            os.chown(shut, uid, uid)
            assert bwrap_host.reachable(shut / "inside", uid, uid)  # its owner may
            shut.chmod(0o701)
            assert bwrap_host.reachable(shut / "inside", uid + 1, uid + 1)  # others may now
    finally:
        shutil.rmtree(top)


def test_masks_land_on_real_files_and_skip_what_is_not_there(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / ".env").write_text("x")
    (project / "conf" / "real").write_text("secret")
    (project / "id_rsa").symlink_to("conf/real")
    (project / ".ssh").mkdir()
    group = tmp_path / "group"
    group.mkdir()
    mounts = [mount(group, "/workspace/group"), mount(project, "/workspace/project", True)]
    placed, notes = bwrap_masks.placements(
        mounts,
        [
            mask("/workspace/project/.env"),
            mask("/workspace/project/id_rsa"),
            mask("/workspace/project/.ssh", folder=True),
            mask("/workspace/project/gone.key"),
            mask("/workspace/group/config.json", source=tmp_path / "trusted.json"),
            mask("/elsewhere/file"),
        ],
    )
    where = {p.container_path: p.folder for p in placed}
    assert where == {
        "/workspace/project/.env": False,
        "/workspace/project/conf/real": False,  # the link's target, not the link
        "/workspace/project/.ssh": True,
        "/workspace/group/config.json": False,  # missing in a read-write mount: bwrap makes it
    }
    assert notes == ["mask /elsewhere/file left out: it is not inside a mount"]


def test_a_link_leading_out_of_every_mount_needs_no_mask(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir()
    (group / "config.json").symlink_to("/etc/passwd")
    placed, _ = bwrap_masks.placements(
        [mount(group, "/w")], [mask("/w/config.json", source=tmp_path / "t.json")]
    )
    assert placed == []


def test_a_mount_through_a_planted_link_is_left_out(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "sub").symlink_to("/etc")
    inner = tmp_path / "inner"
    inner.mkdir()
    mounts = [mount(outer, "/workspace/extra/a"), mount(inner, "/workspace/extra/a/sub")]
    problem = bwrap_masks.nested_mount_problem(mounts, 1)
    assert problem is not None and "symbolic link" in problem
    assert bwrap_masks.nested_mount_problem(mounts, 0) is None


def test_a_nul_in_a_value_is_refused(tmp_path: Path) -> None:
    with Layout(staged=False) as layout:
        layout.add("--setenv", "X", "a\0--bind")
        with pytest.raises(nc.UserError, match="NUL"):
            layout.argv("bwrap", ["true"], drop_to=None)


def test_large_options_fit_the_pipe(tmp_path: Path) -> None:
    big = "v" * 200_000
    with Layout(staged=False) as layout:
        layout.add("--setenv", "BIG", big)
        argv = layout.argv("bwrap", ["true"], drop_to=None)
        fd = int(argv[2])
        data = os.read(fd, 300_000)
    assert data == b"--setenv\0BIG\0" + big.encode() + b"\0"
    assert argv[3:] == ["--", "true"]


def test_staged_sources_are_bound_by_a_root_bwrap_first(tmp_path: Path) -> None:
    with Layout(staged=True) as layout:
        layout.source(tmp_path, "/workspace/group", readonly=False)
        layout.source(tmp_path, "/workspace/project", readonly=True)
        argv = layout.argv("/usr/bin/bwrap", ["true"], drop_to=(7, 8))
        assert layout.inner == [
            "--bind",
            "/tmp/0",
            "/workspace/group",
            "--ro-bind",
            "/tmp/1",
            "/workspace/project",
        ]
        assert layout.outer[0] == "--bind-fd" and layout.outer[2] == "/tmp/0"
        assert layout.outer[3] == "--ro-bind-fd" and layout.outer[5] == "/tmp/1"
    assert argv[3:] == [
        "--",
        "setpriv",
        "--reuid=7",
        "--regid=8",
        "--clear-groups",
        "--",
        "/usr/bin/bwrap",
        argv[10],
        argv[11],
        "--",
        "true",
    ]
