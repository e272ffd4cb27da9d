"""Paths vibe would type into the guest shell, and shares vibe would merge, cannot hurt a run:
the runtime never hands vibe a user's path."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import VibeProject, answer, needs_bwrap

pytestmark = needs_bwrap

HOSTILE_HOST = "evil dir;touch${IFS}PWNED-H;$(touch${IFS}PWNED-H2)"
HOSTILE_GUEST = "c d;touch${IFS}PWNED-C;`touch${IFS}PWNED-C2`"


def allow(vp: VibeProject, root: Path) -> str:
    (vp.base / "config").mkdir(exist_ok=True)
    allowlist = vp.base / "config" / "allowlist.json"
    allowlist.write_text(
        json.dumps(
            {
                "allowedRoots": [{"path": str(root), "allowReadWrite": True}],
                "blockedPatterns": [],
                "nonMainReadOnly": False,
            }
        )
    )
    return str(allowlist)


def test_a_hostile_mount_path_runs_nothing_and_mounts_right(vproject: VibeProject) -> None:
    vproject.base_image()
    shared = vproject.base / "shared"
    hostile = shared / HOSTILE_HOST
    hostile.mkdir(parents=True)
    (hostile / "inside.txt").write_text("hello")
    vproject.group(
        "dev",
        {
            "containerConfig": {
                "additionalMounts": [
                    {"hostPath": str(hostile), "containerPath": HOSTILE_GUEST, "readonly": True}
                ]
            }
        },
    )
    allowlist = allow(vproject, shared)
    result = vproject.ask("dev", "hi", NANOCLAW_MOUNT_ALLOWLIST=allowlist)
    got = answer(result)
    assert got["extra"] == {HOSTILE_GUEST: {"files": ["inside.txt"], "writable": False}}
    assert not [f for f in got["root_files"] if f.startswith("PWNED")]  # nothing ran
    (boot,) = vproject.starts()
    assert HOSTILE_HOST not in json.dumps(boot["argv"])  # vibe never saw the path
    assert HOSTILE_GUEST not in json.dumps(boot["argv"])
    # the next boot of the disk shows nothing ran in the guest's own shell either
    assert not [f for f in answer(vproject.ask("dev", "hi"))["root_files"] if "PWNED" in f]


def test_one_folder_mounted_twice_keeps_both_modes(vproject: VibeProject) -> None:
    """vibe tags shares by host path, so two mounts of one folder would get one mode."""
    vproject.base_image()
    shared = vproject.base / "shared"
    folder = shared / "data"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    vproject.group(
        "dev",
        {
            "containerConfig": {
                "additionalMounts": [
                    {"hostPath": str(folder), "containerPath": "rw", "readonly": False},
                    {"hostPath": str(folder), "containerPath": "ro", "readonly": True},
                ]
            }
        },
    )
    allowlist = allow(vproject, shared)
    got = answer(vproject.ask("dev", "hi", NANOCLAW_MOUNT_ALLOWLIST=allowlist))
    assert got["extra"]["rw"]["writable"] is True
    assert got["extra"]["ro"]["writable"] is False
    assert len(list(folder.glob("probe-*"))) == 1  # written once, through the read-write mount
