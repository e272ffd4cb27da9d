"""The contract's mounts, the allowlist, additional mounts and masks (all planned purely)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.allowlist import load_allowlist
from nanoclaw_runtimes_core.groups import resolve_group
from nanoclaw_runtimes_core.mounts import plan_mounts
from nanoclaw_runtimes_core.settings.core import AdditionalMount
from nanoclaw_runtimes_core.testing import NanoclawProject


def _plan(project: NanoclawProject, folder: str, *extra: AdditionalMount, main: bool = False):  # type: ignore[no-untyped-def]
    project.group(folder)
    group = resolve_group(project.project, folder, is_main=main)
    return plan_mounts(project.project, group, extra, project.allowlist_path)


def _shared(project: NanoclawProject, rw: bool = True) -> Path:
    shared = project.base / "shared"
    (shared / "docs").mkdir(parents=True, exist_ok=True)
    project.write_allowlist({"allowedRoots": [{"path": str(shared), "allowReadWrite": rw}]})
    return shared


# --------------------------------------------------------------------------- allowlist


def test_an_allowlist_with_roots_loads(project: NanoclawProject) -> None:
    project.write_allowlist(
        {
            "$comment": "ignored",
            "allowedRoots": [
                {"path": "~/projects", "allowReadWrite": True, "description": "code"},
                {"path": "/srv/docs"},
            ],
            "blockedPatterns": ["password"],
            "nonMainReadOnly": False,
        }
    )
    allow = load_allowlist(project.allowlist_path, base=project.root)
    assert allow.error is None
    assert [(r.path, r.allow_read_write) for r in allow.allowed_roots] == [
        ("~/projects", True),
        ("/srv/docs", False),
    ]
    assert allow.blocked_patterns[-1] == "password" and ".ssh" in allow.blocked_patterns
    assert allow.non_main_read_only is False


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"allowedRoots": [], "allowedRoots": []}', "allowedRoots: duplicate key"),
        ('{"allowedRoots": [{"path": "rel"}]}', "must be absolute or start with ~"),
        (
            '{"allowedRoots": [{"path": "/x", "allowReadwrite": true}]}',
            'did you mean "allowReadWrite"',
        ),
        ('{"blockedPatterns": [""], "allowedRoots": []}', "must not be empty"),
        ('{"allowedRoots": "~"}', "expected a list of objects"),
        ("{", "invalid JSON"),
    ],
)
def test_an_invalid_allowlist_blocks_every_mount_and_says_why(
    project: NanoclawProject, text: str, reason: str
) -> None:
    project.write_allowlist(text)
    allow = load_allowlist(project.allowlist_path, base=project.root)
    assert allow.error is not None and reason in allow.error
    assert "additional mounts are blocked" in allow.error


def test_a_missing_allowlist_blocks_every_mount(project: NanoclawProject) -> None:
    allow = load_allowlist(project.allowlist_path, base=project.root)
    assert allow.error is not None and "there is no mount allowlist" in allow.error


def test_a_fifo_allowlist_does_not_hang(project: NanoclawProject) -> None:
    os.mkfifo(project.allowlist_path)
    found: list[object] = []
    reader = threading.Thread(
        target=lambda: found.append(load_allowlist(project.allowlist_path, base=project.root)),
        daemon=True,
    )
    reader.start()
    reader.join(5)
    assert found, "reading a FIFO allowlist hung"
    assert "a FIFO, not a regular file" in (found[0].error or "")  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the contract's mounts


def test_the_mounts_of_a_group(project: NanoclawProject) -> None:
    plan = _plan(project, "dev")
    root = project.root
    hosts = {m.container_path: m.host_path for m in plan.mounts}
    assert hosts == {
        "/workspace/group": root / "groups" / "dev",
        "/workspace/global": root / "groups" / "global",
        "/home/node/.claude": root / "data" / "sessions" / "dev" / ".claude",
        "/workspace/ipc": root / "data" / "ipc" / "dev",
    }
    modes = {m.container_path: m.readonly for m in plan.mounts}
    assert modes == {
        "/workspace/group": False,
        "/workspace/global": True,
        "/home/node/.claude": False,
        "/workspace/ipc": False,
    }
    depth = [m.container_path.count("/") for m in plan.mounts]
    assert depth == sorted(depth), "mounts are not parents first"


def test_the_main_group_sees_the_project_read_only_with_secrets_masked(
    project: NanoclawProject,
) -> None:
    project.write_env("A=1\n")
    (project.root / "credentials.json").write_text("{}")
    (project.root / "src" / ".ssh").mkdir(parents=True)
    plan = _plan(project, "main", main=True)
    modes = {m.container_path: m.readonly for m in plan.mounts}
    assert modes["/workspace/project"] is True and modes["/workspace/global"] is False
    masks = {m.container_path: m.folder for m in plan.masks}
    assert masks == {
        "/workspace/project/.env": False,
        "/workspace/project/credentials.json": False,
        "/workspace/project/src/.ssh": True,
    }


def test_an_accepted_additional_mount(project: NanoclawProject) -> None:
    shared = _shared(project)
    entry = AdditionalMount(host_path=str(shared / "docs"), container_path="docs", readonly=False)
    plan = _plan(project, "dev", entry)
    extra = [m for m in plan.mounts if m.kind == "extra"]
    assert [(m.container_path, m.readonly) for m in extra] == [("/workspace/extra/docs", True)]
    assert plan.notes == (
        f'additional mount "{shared / "docs"}": mounted read-only: nonMainReadOnly is set and '
        "this is not the main group",
    )
    main = _plan(project, "main", entry, main=True)
    assert [m.readonly for m in main.mounts if m.kind == "extra"] == [False]


@pytest.mark.parametrize("inside", ["groups", "groups/dev", "data", "data/sessions", "."])
def test_additional_mounts_never_reach_the_projects_control_files(
    project: NanoclawProject, inside: str
) -> None:
    project.group("dev")
    (project.root / "data" / "sessions").mkdir(parents=True, exist_ok=True)
    project.write_allowlist({"allowedRoots": [{"path": str(project.base), "allowReadWrite": True}]})
    entry = AdditionalMount(host_path=str(project.root / inside), container_path="x")
    plan = _plan(project, "dev", entry)
    assert not [m for m in plan.mounts if m.kind == "extra"]
    assert "which decides how runs are made" in plan.rejected[0].reason


def test_the_allowlist_and_dotenv_are_never_mounted(project: NanoclawProject) -> None:
    project.write_allowlist({"allowedRoots": [{"path": str(project.base), "allowReadWrite": True}]})
    plan = _plan(project, "dev", AdditionalMount(host_path=str(project.home), container_path="h"))
    assert "overlaps" in plan.rejected[0].reason
    project.write_env("A=1\n")
    plan = _plan(project, "dev", AdditionalMount(host_path=str(project.root / ".env")))
    assert plan.rejected and plan.rejected[0].reason


@pytest.mark.parametrize(
    ("host", "container", "reason"),
    [
        ("{shared}/docs", "/abs", "must be relative"),
        ("{shared}/docs", "../up", "must not contain '..'"),
        ("{shared}/docs", "a:b", "must not contain ':' or ','"),
        ("{shared}/nope", "x", "does not exist"),
        ("/etc", "etc", "is not under an allowed root"),
        ("{shared}/.ssh", "keys", 'matches the blocked pattern ".ssh"'),
    ],
)
def test_refused_additional_mounts_say_why(
    project: NanoclawProject, host: str, container: str, reason: str
) -> None:
    shared = _shared(project)
    (shared / ".ssh").mkdir(exist_ok=True)
    entry = AdditionalMount(host_path=host.format(shared=shared), container_path=container)
    plan = _plan(project, "dev", entry)
    assert len(plan.rejected) == 1 and reason in plan.rejected[0].reason


def test_two_mounts_may_not_share_a_container_path(project: NanoclawProject) -> None:
    shared = _shared(project)
    (shared / "more").mkdir()
    plan = _plan(
        project,
        "dev",
        AdditionalMount(host_path=str(shared / "docs"), container_path="x"),
        AdditionalMount(host_path=str(shared / "more"), container_path="x"),
    )
    assert len([m for m in plan.mounts if m.kind == "extra"]) == 1
    assert "is already used by another mount" in plan.rejected[0].reason


def test_a_linked_global_folder_is_refused(project: NanoclawProject) -> None:
    from nanoclaw_runtimes_core.errors import ConfigError

    (project.root / "groups" / "global").rmdir()
    (project.root / "groups" / "global").symlink_to(project.base)
    with pytest.raises(ConfigError, match="groups/global is a symbolic link"):
        _plan(project, "dev")
