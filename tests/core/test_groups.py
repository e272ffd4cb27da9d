"""Group folder rules: names, 'global', escapes through symlinks, the main group."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.groups import check_folder_name, list_groups, resolve_group
from nanoclaw_runtimes_core.models import Project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "groups").mkdir()
    return Project(root=tmp_path)


@pytest.mark.parametrize("name", ["main", "dev", "a", "A1", "team_chat-2", "9", "x" * 64])
def test_valid_names(project, name):
    group = resolve_group(project, name)
    assert group.folder == name
    assert group.path == project.root / "groups" / name
    assert group.is_main is (name == "main")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("global", "'global' is the folder shared by every group"),
        ("Global", "'global' is the folder shared by every group"),
        ("x" * 65, "it is 65 characters long, the limit is 64"),
        ("-dev", "it starts with '-'"),
        ("_dev", "it starts with '_'"),
        ("../etc", "it starts with '.'"),
        ("dev/../../etc", "it contains '/'"),
        ("a b", "it contains ' '"),
        ("dev.", "it contains '.'"),
        ("dév", "it contains 'é'"),
        ("dev\n", "it contains '\\n'"),
    ],
)
def test_invalid_names_say_what_is_wrong_and_the_rule(project, name, reason):
    with pytest.raises(UserError) as info:
        resolve_group(project, name)
    message = str(info.value)
    assert message.startswith(f"invalid group name {name!r}: {reason}")
    assert "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$" in message


def test_check_folder_name_accepts_and_refuses():
    check_folder_name("ok-name")
    with pytest.raises(UserError):
        check_folder_name("no/slash")


def test_symlink_escaping_groups_is_refused(project, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.groups_dir / "evil").symlink_to(outside)
    with pytest.raises(UserError) as info:
        resolve_group(project, "evil")
    assert "outside" in str(info.value) and "remove the symlink groups/evil" in str(info.value)


def test_symlink_onto_another_group_is_refused(project):
    (project.groups_dir / "dev").mkdir()
    (project.groups_dir / "alias").symlink_to(project.groups_dir / "dev")
    with pytest.raises(UserError, match="is a link to groups/dev"):
        resolve_group(project, "alias")


def test_symlinked_groups_folder_itself_is_fine(tmp_path):
    real = tmp_path / "disk" / "groups"
    (real / "dev").mkdir(parents=True)
    root = tmp_path / "project"
    root.mkdir()
    (root / "groups").symlink_to(real)
    assert resolve_group(Project(root=root), "dev").folder == "dev"


def test_broken_symlink_is_refused(project):
    (project.groups_dir / "gone").symlink_to(project.root / "nowhere")
    with pytest.raises(UserError, match="broken or looping symlink"):
        resolve_group(project, "gone")


def test_a_file_is_not_a_group(project):
    (project.groups_dir / "notes").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        resolve_group(project, "notes")


def test_must_exist(project):
    assert resolve_group(project, "new").path == project.groups_dir / "new"
    with pytest.raises(UserError, match="no folder"):
        resolve_group(project, "new", must_exist=True)


def test_list_groups_keeps_only_valid_group_folders(project, tmp_path):
    for name in ("main", "dev", "global", "bad name", ".hidden"):
        (project.groups_dir / name).mkdir()
    (project.groups_dir / "file").write_text("x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project.groups_dir / "escape").symlink_to(outside)
    groups = list_groups(project)
    assert [g.folder for g in groups] == ["dev", "main"]
    assert [g.is_main for g in groups] == [False, True]


def test_list_groups_without_groups_folder(tmp_path):
    assert list_groups(Project(root=tmp_path)) == []
