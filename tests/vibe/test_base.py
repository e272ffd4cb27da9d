"""``prepare --base vibe`` through the stand-in: provisioned bases, failures that keep the
previous base, and a custom base made with vibe as the docs say."""

from __future__ import annotations

import os
import subprocess

import pytest
from nanoclaw_runtime_vibe import cow, images

import nanoclaw_runtimes_core as nc

from .conftest import STANDIN, VibeProject, answer, needs_bwrap

pytestmark = needs_bwrap


def leftovers(vp: VibeProject) -> list[str]:
    return [p.name for p in vp.images.iterdir() if cow.leftover_state(p) != "not-ours"]


def test_build_base_with_a_provisioning_script(vproject: VibeProject) -> None:
    provision = vproject.base / "provision.sh"
    provision.write_text(
        "#!/bin/bash\nset -e\necho provisioning now\necho built-in > /opt/marker\n"
    )
    messages: list[str] = []
    summary = vproject.runtimes().prepare(
        base_runtime="vibe",
        progress=lambda m, f: messages.append(m),
        options={"provision_script": str(provision)},
    )
    base = vproject.images / "base.raw"
    assert summary is not None and "built" in summary and base.is_file()
    assert any("provisioning now" in m for m in messages)
    assert leftovers(vproject) == []
    info = images.read_base_info(base)
    assert info is not None and info["kind"] == "vibe-debian" and info["engine"] == "vibe"
    assert images.default_agent(base) == ["python3", nc.EXAMPLE_AGENT]
    vproject.group("dev")
    assert answer(vproject.ask("dev", "hi"))["opt"] == "built-in"  # the clone has the base's state
    again = vproject.runtimes().prepare(base_runtime="vibe")
    assert again is not None and "already exists" in again


def test_a_failed_build_leaves_the_previous_base(vproject: VibeProject) -> None:
    base = vproject.base_image()
    with base.open("r+b") as f:
        f.write(b"previous base")
    bad = vproject.base / "bad.sh"
    bad.write_text("#!/bin/bash\necho half > /opt/half\nexit 7\n")
    with pytest.raises(nc.UserError) as info:
        vproject.runtimes().prepare(
            base_runtime="vibe", force=True, options={"provision_script": str(bad)}
        )
    assert "status 7" in str(info.value) and "untouched" in str(info.value)
    assert base.read_bytes()[:13] == b"previous base"
    assert leftovers(vproject) == []


def test_a_source_image_is_provisioned_into_a_new_base(vproject: VibeProject) -> None:
    source = vproject.base / "source.raw"
    with open(source, "wb") as f:
        f.truncate(64 * 2**20)
    provision = vproject.base / "p.sh"
    provision.write_text("echo from-source > /opt/marker\n")
    summary = vproject.runtimes().prepare(
        base_runtime="vibe", options={"source": str(source), "provision_script": str(provision)}
    )
    assert summary is not None and "from" in summary
    assert source.read_bytes()[:16] == bytes(16)  # the source itself is left alone
    vproject.group("dev")
    assert answer(vproject.ask("dev", "hi"))["opt"] == "from-source"


def test_a_custom_base_customised_with_vibe_by_hand(vproject: VibeProject) -> None:
    base = vproject.base_image()
    custom = vproject.images / "custom-base.raw"
    subprocess.run(["cp", "--sparse=always", str(base), str(custom)], check=True)  # as documented
    subprocess.run(
        [str(STANDIN), "--no-default-mounts", "--network", "vznat",
         "--send", "echo customised > /opt/marker; systemctl poweroff", str(custom)],
        check=True, capture_output=True, timeout=60,
        env={**os.environ, "VIBE_STANDIN_STATE": str(vproject.state), "TMPDIR": str(vproject.base)},
    )  # fmt: skip
    vproject.group("dev", {"containerConfig": {"vibeImage": "custom-base.raw"}})
    vproject.group("plain")
    assert answer(vproject.ask("dev", "hi"))["opt"] == "customised"
    assert answer(vproject.ask("plain", "hi"))["opt"] is None


def test_missing_vibe_is_reported(vproject: VibeProject) -> None:
    vproject.env["VIBE_EXECUTABLE"] = "/nonexistent/vibe"
    status = vproject.runtimes().engine_status("vibe")
    assert status is not None and not status.available and "lynaghk/vibe" in status.fix
    with pytest.raises(nc.EngineUnavailable, match="VIBE_EXECUTABLE"):
        vproject.runtimes().prepare(base_runtime="vibe")
