"""prepare, stats and engine_status of the tart runtime; names and shares."""

from __future__ import annotations

import platform
from pathlib import Path

import attrs
import pytest
from nanoclaw_runtime_tart import plugin
from nanoclaw_runtime_tart.settings import DEFAULT_BASE_IMAGE, TartSettings
from nanoclaw_runtime_tart.shares import plan_shares
from nanoclaw_runtime_tart.vm import make_name, parse_name
from tart_harness import assert_no_vms, local_vms, make_group

from nanoclaw_runtimes_core.errors import UserError
from nanoclaw_runtimes_core.models import Mount, PrepareRequest, Project, StatsRequest


def with_(settings: TartSettings, **changes: object) -> TartSettings:
    return attrs.evolve(settings, **changes)


def prepare_base(root: Path, settings: TartSettings, progress: list[str] | None = None):
    def report(message: str, _fraction: float | None) -> None:
        if progress is not None:
            progress.append(message)

    return plugin.prepare(
        request=PrepareRequest(project=Project(root=root), settings=settings, progress=report)
    )


def test_prepare_base_pulls_and_checks_the_guest_agent(state, root, settings):
    progress: list[str] = []
    summary = prepare_base(root, with_(settings, agent_command=("nanoclaw-agent",)), progress)
    assert summary.startswith(f"base {DEFAULT_BASE_IMAGE} ready: guest agent answered")
    assert "'nanoclaw-agent' (TART_AGENT_COMMAND) was not found" in summary
    assert any("fetching" in m for m in progress)
    assert_no_vms(state)
    # The OCI image is now cached, and stats report its size.
    rows = plugin.stats(request=StatsRequest(project=Project(root=root), settings=settings))
    base = next(r for r in rows if r.kind == "base")
    assert base.path == DEFAULT_BASE_IMAGE and base.apparent_mb == 50 * 1024
    assert base.allocated_mb == 25 * 1024


def test_prepare_base_finds_an_installed_agent_command(state, root, settings):
    summary = prepare_base(root, with_(settings, agent_command=("sh", "-c", "true")))
    assert "warning" not in summary


def test_prepare_base_fails_clearly_without_guest_agent(state, root, settings, monkeypatch):
    monkeypatch.setenv("TART_STANDIN_NO_AGENT", "1")
    with pytest.raises(UserError, match="did not answer within 1000 ms"):
        prepare_base(root, with_(settings, boot_timeout_ms=1000))
    assert_no_vms(state)


def test_prepare_base_fails_clearly_for_an_unknown_image(state, root, settings, monkeypatch):
    monkeypatch.setenv("TART_STANDIN_REMOTE", DEFAULT_BASE_IMAGE)
    with pytest.raises(UserError, match=r"TART_BASE_IMAGE.*manifest unknown"):
        prepare_base(root, with_(settings, base_image="ghcr.io/example/nope:1"))
    assert_no_vms(state)


def test_prepare_group_has_nothing_to_do(state, root, settings):

    project, group, _ = make_group(root)
    assert (
        plugin.prepare(request=PrepareRequest(project=project, settings=settings, group=group))
        is None
    )
    assert not (state / "calls.jsonl").exists()


def test_stats_without_base_says_how_to_fetch_it(state, root, settings):
    rows = plugin.stats(request=StatsRequest(project=Project(root=root), settings=settings))
    assert len(rows) == 1 and rows[0].kind == "base" and "prepare --base tart" in rows[0].note
    assert local_vms() == []


def test_engine_status_with_the_stand_in(state, settings):
    status = plugin.engine_status(settings=settings)
    assert status.available and status.version == "2.28.6"


def test_engine_status_without_tart_names_the_reason(settings):
    status = plugin.engine_status(settings=with_(settings, executable="no-such-tart-here"))
    assert not status.available and status.engine == "tart"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        assert status.fix == "brew install cirruslabs/cli/tart"
    else:
        assert "only on macOS on Apple silicon" in status.detail
        assert platform.system() in status.detail


def test_names_carry_group_run_and_owner_pid():
    vm = make_name("my-group_2", "run-1.x")
    assert vm.name.startswith("nanoclaw-my-group_2-run1x-pid")
    assert parse_name(vm.name) == vm
    assert parse_name("nanoclaw-g-abc") is None
    assert parse_name("other-g-abc-pid12") is None
    assert len(make_name("g").run) == 12  # a fresh run id when none is given


def test_shares_refuse_paths_tart_would_misread(tmp_path):
    odd = tmp_path / "a:b"
    mounts = [Mount(host_path=odd, container_path="/workspace/extra/x", readonly=True)]
    with pytest.raises(UserError, match="contains ':' or ','"):
        plan_shares(mounts, "/Volumes/My Shared Files")


def test_shares_get_unique_names_and_read_only_flags(tmp_path):
    mounts = [
        Mount(host_path=tmp_path, container_path="/workspace/extra/data", readonly=True),
        Mount(host_path=tmp_path, container_path="/workspace/extra-data", readonly=False),
    ]
    shares = plan_shares(mounts, "/G")
    assert [s.name for s in shares] == ["extra-data", "extra-data-2"]
    assert shares[0].dir_arg() == f"extra-data:{tmp_path}:ro"
    assert shares[1].dir_arg() == f"extra-data-2:{tmp_path}"
    assert shares[1].guest_path == "/G/extra-data-2"
