"""The contract's mount table and the allowlist that guards additional mounts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import Group, Mount, Project
from nanoclaw_runtimes_core.mounts import (
    BUILTIN_BLOCKED_PATTERNS,
    contract_mounts,
    describe_rejection,
    load_allowlist,
)
from nanoclaw_runtimes_core.settings import AdditionalMount


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    (home / "projects" / "app").mkdir(parents=True)
    (home / "shared" / "docs").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "groups").mkdir(parents=True)
    return Project(root=root)


@pytest.fixture
def allowlist_file(home: Path) -> Path:
    return home / ".config" / "nanoclaw" / "mount-allowlist.json"


def write_allowlist(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def standard_allowlist(path: Path, **overrides) -> Path:
    data = {
        "allowedRoots": [
            {"path": "~/projects", "allowReadWrite": True, "description": "code"},
            {"path": "~/shared", "allowReadWrite": False},
        ],
        "blockedPatterns": ["password"],
        "nonMainReadOnly": True,
    }
    data.update(overrides)
    return write_allowlist(path, data)


def group(project: Project, folder: str) -> Group:
    return Group(folder=folder, path=project.groups_dir / folder, is_main=folder == "main")


def mount(host: str, container: str | None = None, readonly: bool = True) -> AdditionalMount:
    return AdditionalMount(host_path=host, container_path=container, readonly=readonly)


def extras(plan) -> list[Mount]:
    return [m for m in plan.mounts if m.container_path.startswith("/workspace/extra/")]


def plan_for(project, folder, entries, allowlist_file):
    return contract_mounts(project, group(project, folder), entries, allowlist_file)


# --------------------------------------------------------------------------- the table


def test_non_main_group_table(project):
    plan = contract_mounts(project, group(project, "dev"))
    root = project.root.resolve()
    assert plan.mounts == (
        Mount(host_path=root / "groups/dev", container_path="/workspace/group", readonly=False),
        Mount(host_path=root / "groups/global", container_path="/workspace/global", readonly=True),
        Mount(
            host_path=root / "data/sessions/dev/.claude",
            container_path="/home/node/.claude",
            readonly=False,
        ),
        Mount(host_path=root / "data/ipc/dev", container_path="/workspace/ipc", readonly=False),
    )
    assert plan.rejected == () and plan.notes == ()
    for m in plan.mounts:
        assert m.host_path.is_dir(), m


def test_main_group_gets_the_project_read_only_and_global_read_write(project):
    plan = contract_mounts(project, group(project, "main"))
    by_target = {m.container_path: m for m in plan.mounts}
    assert by_target["/workspace/project"].host_path == project.root.resolve()
    assert by_target["/workspace/project"].readonly is True
    assert by_target["/workspace/global"].readonly is False
    assert [m.container_path for m in plan.mounts] == [
        "/workspace/group",
        "/workspace/global",
        "/workspace/project",
        "/home/node/.claude",
        "/workspace/ipc",
    ]


def test_ipc_subfolders_are_created(project):
    contract_mounts(project, group(project, "dev"))
    for sub in ("messages", "tasks", "input"):
        assert (project.root / "data/ipc/dev" / sub).is_dir()


def test_a_group_breaking_the_folder_rules_gets_no_mounts(project):
    with pytest.raises(UserError):
        contract_mounts(project, Group(folder="../x", path=project.root, is_main=False))
    assert not (project.root / "data").exists()


# --------------------------------------------------------------------------- the allowlist file


def test_missing_allowlist_blocks_every_additional_mount(project, home, allowlist_file):
    plan = plan_for(project, "main", [mount("~/projects/app")], allowlist_file)
    assert extras(plan) == []
    (rejected,) = plan.rejected
    assert rejected.host_path == "~/projects/app"
    assert "there is no mount allowlist at ~/.config/nanoclaw/mount-allowlist.json" in (
        rejected.reason
    )
    assert "NANOCLAW_MOUNT_ALLOWLIST" in rejected.reason


def test_invalid_json_allowlist_blocks_everything_with_the_reason(project, home, allowlist_file):
    write_allowlist(allowlist_file, '{"allowedRoots": [}')
    (rejected,) = plan_for(project, "main", [mount("~/projects/app")], allowlist_file).rejected
    assert "the mount allowlist is invalid (line 1, column 19:" in rejected.reason
    assert "additional mounts are blocked" in rejected.reason


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ([], "must be a JSON object"),
        ({}, "allowedRoots: missing: a list of objects is required"),
        ({"allowedRoots": [{"path": 3}]}, "allowedRoots[0].path: expected a string, got 3"),
        (
            {"allowedRoots": [], "nonMainReadOnly": "false"},
            'nonMainReadOnly: expected true or false, got "false"',
        ),
        (
            {"allowedRoots": [], "nonMainReadonly": False},
            'nonMainReadonly: unknown key; did you mean "nonMainReadOnly"?',
        ),
        (
            {"allowedRoots": [{"path": "~/p", "allowReadwrite": True}]},
            'allowedRoots[0].allowReadwrite: unknown key; did you mean "allowReadWrite"?',
        ),
        ({"allowedRoots": [{"path": "projects"}]}, "must be absolute or start with ~"),
        ({"allowedRoots": [], "blockedPatterns": [""]}, "blockedPatterns[0]: must not be empty"),
    ],
)
def test_invalid_allowlist_content(home, allowlist_file, data, detail):
    write_allowlist(allowlist_file, data)
    allowlist = load_allowlist(allowlist_file)
    assert allowlist.error is not None and detail in allowlist.error
    assert allowlist.allowed_roots == ()


def test_valid_allowlist(home, allowlist_file):
    standard_allowlist(allowlist_file)
    allowlist = load_allowlist("~/.config/nanoclaw/mount-allowlist.json")
    assert allowlist.error is None
    assert [r.path for r in allowlist.allowed_roots] == ["~/projects", "~/shared"]
    assert allowlist.blocked_patterns == (*BUILTIN_BLOCKED_PATTERNS, "password")
    assert allowlist.non_main_read_only is True


def test_allowlist_is_reread_when_it_changes(home, allowlist_file):
    standard_allowlist(allowlist_file)
    assert load_allowlist(allowlist_file).non_main_read_only is True
    standard_allowlist(allowlist_file, nonMainReadOnly=False)
    st = allowlist_file.stat()
    os.utime(allowlist_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_allowlist(allowlist_file).non_main_read_only is False
    allowlist_file.unlink()
    assert load_allowlist(allowlist_file).error is not None


# --------------------------------------------------------------------------- accepting and refusing


def test_accepted_mount_under_an_allowed_root(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    plan = plan_for(project, "dev", [mount("~/projects/app")], allowlist_file)
    assert plan.rejected == ()
    assert extras(plan) == [
        Mount(
            host_path=(home / "projects/app").resolve(),
            container_path="/workspace/extra/app",
            readonly=True,
        )
    ]


def test_the_root_itself_and_nested_container_paths(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    plan = plan_for(project, "dev", [mount("~/shared", "team/shared/")], allowlist_file)
    assert [m.container_path for m in extras(plan)] == ["/workspace/extra/team/shared"]


def test_mount_outside_the_allowlist_is_refused(project, home, allowlist_file, tmp_path):
    standard_allowlist(allowlist_file)
    outside = tmp_path / "outside"
    outside.mkdir()
    plan = plan_for(project, "main", [mount(str(outside))], allowlist_file)
    assert extras(plan) == []
    (rejected,) = plan.rejected
    assert rejected.reason == (
        f"{outside.resolve()} is not under an allowed root of "
        "~/.config/nanoclaw/mount-allowlist.json (allowed: ~/projects, ~/shared); "
        "add a root there to allow it"
    )
    assert describe_rejection(rejected).startswith(f'additional mount "{outside}" refused: ')


def test_prefix_of_a_root_is_not_under_it(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (home / "projects-old").mkdir()
    (rejected,) = plan_for(project, "main", [mount("~/projects-old")], allowlist_file).rejected
    assert "is not under an allowed root" in rejected.reason


@pytest.mark.parametrize("name", [".ssh", ".aws", ".env.local", "my-credentials", "id_rsa.pub"])
def test_builtin_blocked_patterns(project, home, allowlist_file, name):
    standard_allowlist(allowlist_file)
    (home / "projects" / name).mkdir()
    plan = plan_for(project, "main", [mount(f"~/projects/{name}", "x")], allowlist_file)
    (rejected,) = plan.rejected
    assert "matches the blocked pattern" in rejected.reason
    assert extras(plan) == []


def test_blocked_pattern_on_a_parent_component_and_user_pattern(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (home / "projects" / ".docker" / "sub").mkdir(parents=True)
    (home / "projects" / "old-passwords").mkdir()
    plan = plan_for(
        project,
        "main",
        [mount("~/projects/.docker/sub"), mount("~/projects/old-passwords")],
        allowlist_file,
    )
    reasons = [r.reason for r in plan.rejected]
    assert len(reasons) == 2
    assert 'blocked pattern ".docker"' in reasons[0]
    assert 'blocked pattern "password"' in reasons[1]


def test_blocked_patterns_ignore_case(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (home / "projects" / ".SSH").mkdir()
    (rejected,) = plan_for(
        project, "main", [mount("~/projects/.SSH", "k")], allowlist_file
    ).rejected
    assert 'blocked pattern ".ssh"' in rejected.reason


def test_symlink_escaping_an_allowed_root_is_refused(project, home, allowlist_file, tmp_path):
    standard_allowlist(allowlist_file)
    outside = tmp_path / "etc-like"
    outside.mkdir()
    (home / "projects" / "link").symlink_to(outside)
    (rejected,) = plan_for(project, "main", [mount("~/projects/link")], allowlist_file).rejected
    assert f"{outside.resolve()} is not under an allowed root" in rejected.reason


def test_symlink_into_a_secret_folder_is_blocked(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (home / "projects" / ".gnupg").mkdir()
    (home / "projects" / "innocent").symlink_to(home / "projects" / ".gnupg")
    (rejected,) = plan_for(project, "main", [mount("~/projects/innocent")], allowlist_file).rejected
    assert 'blocked pattern ".gnupg"' in rejected.reason


def test_missing_host_path(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (rejected,) = plan_for(project, "main", [mount("~/projects/nope")], allowlist_file).rejected
    assert rejected.reason.startswith("host path ~/projects/nope does not exist")


def test_relative_host_path_is_taken_from_the_project_root(project, home, allowlist_file):
    standard_allowlist(allowlist_file, allowedRoots=[{"path": str(project.root / "shared")}])
    (project.root / "shared").mkdir()
    plan = plan_for(project, "dev", [mount("shared")], allowlist_file)
    assert [m.host_path for m in extras(plan)] == [(project.root / "shared").resolve()]


@pytest.mark.parametrize(
    ("container", "reason"),
    [
        ("/abs", 'containerPath "/abs" must be relative'),
        ("../up", "must not contain '..'"),
        ("a/../../b", "must not contain '..'"),
        ("c:d", "must not contain ':'"),
        ("", 'containerPath "" is empty'),
        ("  ", "is empty"),
        (".", "names no folder"),
        ("a\nb", "control characters"),
    ],
)
def test_container_path_rules(project, home, allowlist_file, container, reason):
    standard_allowlist(allowlist_file)
    (rejected,) = plan_for(
        project, "main", [mount("~/projects/app", container)], allowlist_file
    ).rejected
    assert reason in rejected.reason
    assert rejected.container_path == container


def test_same_container_path_twice(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    plan = plan_for(
        project, "main", [mount("~/projects/app"), mount("~/shared/docs", "app")], allowlist_file
    )
    assert len(extras(plan)) == 1
    (rejected,) = plan.rejected
    assert rejected.reason == "/workspace/extra/app is already used by ~/projects/app"


def test_every_rejected_mount_is_returned_and_good_ones_kept(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    (home / ".ssh").mkdir()
    entries = [mount("~/.ssh"), mount("~/projects/app"), mount("/nonexistent-path"), mount("~")]
    plan = plan_for(project, "main", entries, allowlist_file)
    assert [m.container_path for m in extras(plan)] == ["/workspace/extra/app"]
    assert [r.host_path for r in plan.rejected] == ["~/.ssh", "/nonexistent-path", "~"]


# --------------------------------------------------------------------------- read-write


@pytest.mark.parametrize(
    ("folder", "root", "non_main_read_only", "asks_rw", "readonly", "note"),
    [
        ("main", "~/projects", True, True, False, None),
        ("main", "~/projects", True, False, True, None),
        ("main", "~/shared", True, True, True, "does not set allowReadWrite"),
        ("dev", "~/projects", True, True, True, "nonMainReadOnly is set"),
        ("dev", "~/projects", False, True, False, None),
        ("dev", "~/shared", False, True, True, "does not set allowReadWrite"),
        ("dev", "~/projects", False, False, True, None),
    ],
)
def test_read_write_needs_the_request_the_root_and_main_or_no_non_main_read_only(
    project, home, allowlist_file, folder, root, non_main_read_only, asks_rw, readonly, note
):
    standard_allowlist(allowlist_file, nonMainReadOnly=non_main_read_only)
    host = f"{root}/sub"
    Path(host).expanduser().mkdir()
    plan = plan_for(project, folder, [mount(host, readonly=not asks_rw)], allowlist_file)
    (extra,) = extras(plan)
    assert extra.readonly is readonly
    if note:
        (line,) = plan.notes
        assert note in line and host in line
    else:
        assert plan.notes == ()


def test_an_allowlist_object_can_be_passed_directly(project, home, allowlist_file):
    standard_allowlist(allowlist_file)
    allowlist = load_allowlist(allowlist_file)
    allowlist_file.unlink()
    plan = contract_mounts(
        project, group(project, "dev"), [mount("~/projects/app")], allowlist=allowlist
    )
    assert len(extras(plan)) == 1
