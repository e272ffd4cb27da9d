"""prepare --base vibe through the stand-in, and custom bases made as the docs say."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe import cow

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import ContainerInput

from .conftest import VIBE_STANDIN, Collect, VibeProject, needs_bwrap

pytestmark = needs_bwrap


def opt_marker(vp: VibeProject, folder: str) -> str | None:
    inp = ContainerInput(prompt="hi", group_folder=folder, chat_jid="c", is_main=False)
    result = vp.runtimes().execute(folder, input=inp, sink=Collect())
    assert result.status == "success", result.error_message()
    return json.loads(result.outputs[0].result)["opt"]


def test_build_base_with_a_provisioning_script(vproject: VibeProject, tmp_path: Path) -> None:
    provision = tmp_path / "provision.sh"
    provision.write_text("#!/bin/bash\nset -e\necho provisioning\necho built-in > /opt/marker\n")
    messages: list[str] = []
    summary = vproject.runtimes().prepare(
        base_runtime="vibe",
        progress=lambda m, f: messages.append(m),
        options={"provision_script": str(provision)},
    )
    base = vproject.images / "base.raw"
    assert "built" in summary and base.is_file()
    assert any("provisioning" in m for m in messages)
    assert cow.stale_temps(base, include_live=True) == []
    vproject.group("dev")
    assert opt_marker(vproject, "dev") == "built-in"  # the group's clone carries the base's state
    again = vproject.runtimes().prepare(base_runtime="vibe")
    assert "already exists" in again


def test_failed_build_leaves_the_previous_base(vproject: VibeProject, tmp_path: Path) -> None:
    base = vproject.base()
    base.open("r+b").write(b"previous base")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\necho half > /opt/half\nexit 7\n")
    with pytest.raises(Exception) as info:
        vproject.runtimes().prepare(
            base_runtime="vibe", force=True, options={"provision_script": str(bad)}
        )
    assert "status 7" in str(info.value)
    assert base.read_bytes()[:13] == b"previous base"
    assert cow.stale_temps(base, include_live=True) == []


def test_custom_base_customised_with_vibe(vproject: VibeProject) -> None:
    base = vproject.base()
    custom = vproject.images / "custom-base.raw"
    subprocess.run(["cp", "--sparse=always", str(base), str(custom)], check=True)  # as documented
    subprocess.run(
        [
            str(VIBE_STANDIN),
            "--no-default-mounts",
            "--send",
            "echo customised > /opt/marker; systemctl poweroff",
            str(custom),
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env=os.environ,
    )
    vproject.group("dev", {"containerConfig": {"vibeImage": "custom-base.raw"}})
    vproject.group("plain")
    assert opt_marker(vproject, "dev") == "customised"
    assert opt_marker(vproject, "plain") is None


def test_missing_vibe_is_reported(vproject: VibeProject) -> None:
    vproject.env["VIBE_EXECUTABLE"] = "/nonexistent/vibe"
    status = vproject.runtimes().engine_status("vibe")
    assert not status.available and "lynaghk/vibe" in status.fix
    with pytest.raises(UserError):
        vproject.runtimes().prepare(base_runtime="vibe")
