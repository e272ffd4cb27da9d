"""Group names and folders, as the NanoClaw contract defines them."""

from __future__ import annotations

import pytest

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.groups import (
    check_folder_name,
    name_problem,
    resolve_group,
    scan_groups,
)
from nanoclaw_runtimes_core.testing import NanoclawProject


@pytest.mark.parametrize("name", ["main", "dev", "a", "A9_-x", "x" * 64])
def test_valid_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "it is empty"),
        ("global", "'global' is the folder shared by every group, not a group"),
        ("GLOBAL", "'global' is the folder shared by every group, not a group"),
        ("x" * 65, "it is 65 characters long, the limit is 64"),
        ("-dev", "it starts with '-'"),
        ("../etc", "it starts with '.'"),
        ("de v", "it contains ' '"),
        ("dev/x", "it contains '/'"),
    ],
)
def test_invalid_names_say_why_and_the_rule(name: str, why: str) -> None:
    assert name_problem(name) == why
    with pytest.raises(nc.UserError, match="a group name is 1 to 64 letters"):
        check_folder_name(name)


def test_a_group_folder_must_be_a_real_folder(project: NanoclawProject) -> None:
    with pytest.raises(nc.UserError, match="has no folder groups/dev; create it"):
        resolve_group(project.project, "dev", is_main=False)
    project.group("real")
    (project.root / "groups" / "alias").symlink_to(project.group_path("real"))
    with pytest.raises(nc.UserError, match="is a symbolic link"):
        resolve_group(project.project, "alias", is_main=False)
    (project.root / "groups" / "file").write_text("x")
    with pytest.raises(nc.UserError, match="is not a folder"):
        resolve_group(project.project, "file", is_main=False)
    group = resolve_group(project.project, "real", is_main=True)
    assert group.is_main and group.path == project.group_path("real")


def test_scan_lists_groups_and_says_why_others_are_not(project: NanoclawProject) -> None:
    project.group("b")
    project.group("a")
    (project.root / "groups" / "bad name").mkdir()
    (project.root / "groups" / "alias").symlink_to(project.group_path("a"))
    (project.root / "groups" / "notes.txt").write_text("x")
    groups, skipped = scan_groups(project.project)
    assert groups == ["a", "b"]
    assert dict(skipped)["bad name"].startswith("not a group: invalid name")
    assert "symbolic link" in dict(skipped)["alias"]
    assert "notes.txt" not in dict(skipped)
