"""Settings, engine status and the hooks outside a run."""

from __future__ import annotations

import pytest
from conftest import BASE, TartLab
from nanoclaw_runtime_tart.guest import env_block
from nanoclaw_runtime_tart.settings import TartSettings
from nanoclaw_runtime_tart.shares import plan_shares

import nanoclaw_runtimes_core as nc


def test_engine_status_names_the_isolation_it_has(lab: TartLab) -> None:
    status = lab.runtimes().engine_status("tart")
    assert status is not None and status.available and status.version == "2.32.1"
    assert status.isolation == {nc.ISOLATION_FILESYSTEM, nc.ISOLATION_PID}
    assert nc.ISOLATION_MASKS not in status.isolation


def test_a_missing_tart_says_how_to_fix_it(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("TART_EXECUTABLE", "/nonexistent/tart")
    status = lab.runtimes().engine_status("tart")
    assert status is not None and not status.available and status.fix


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TART_CPUS", "0", "TART_CPUS"),
        ("TART_RAM", "100", "TART_RAM"),
        ("TART_SPARE", "maybe", "TART_SPARE"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    lab: TartLab, monkeypatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    lab.group("g1")
    with pytest.raises(nc.ConfigError) as caught:
        lab.runtimes().plan("g1")
    assert named in str(caught.value)


def test_group_keys_and_tart_timeout(lab: TartLab, monkeypatch) -> None:
    monkeypatch.setenv("CONTAINER_TIMEOUT", "5000")
    monkeypatch.setenv("TART_TIMEOUT", "7000")
    lab.group("g1", {"cpus": 6, "ram": 4096, "tartImage": "other", "spare": True})
    plan = lab.runtimes().plan("g1")
    assert plan.timeout_ms == 7000
    settings = plan.settings
    assert (settings.cpus, settings.ram, settings.base_image, settings.spare) == (
        6,
        4096,
        "other",
        True,
    )
    with pytest.raises(nc.ConfigError) as caught:
        lab.group("g2", {"cpus": 100})
        lab.runtimes().plan("g2")
    assert "cpus" in str(caught.value)


def test_shares_keep_the_last_dir_segment_ours() -> None:
    mounts = (
        nc.Mount(
            host_path=__import__("pathlib").Path("/a/b,ro"),
            container_path="/workspace/group",
            readonly=False,
            kind="group",
        ),
        nc.Mount(
            host_path=__import__("pathlib").Path("/x/y"),
            container_path="/workspace/extra/Docs & more",
            readonly=True,
        ),
    )
    plan = plan_shares(mounts, agent_dir=None, run_folder=None)
    assert plan.dir_args() == (
        "group:/a/b,ro:tag=com.apple.virtio-fs.automount",
        "extra-docs-more:/x/y:ro,tag=com.apple.virtio-fs.automount",
    )
    with pytest.raises(nc.UserError, match="':'"):
        plan_shares(
            (
                nc.Mount(
                    host_path=__import__("pathlib").Path("/a:b"),
                    container_path="/workspace/group",
                    readonly=False,
                ),
            ),
            agent_dir=None,
            run_folder=None,
        )


def test_env_block_counts_bytes() -> None:
    block = env_block({"A": "é\n", "B": ""})
    assert block == b"2\nA\n3\n\xc3\xa9\nB\n0\n"


def test_stats_show_the_base_and_prepare_base_proves_it_boots(lab: TartLab) -> None:
    rows = lab.runtimes().stats(["tart"])
    assert [(r.kind, r.path) for r in rows] == [("base", BASE)]
    summary = lab.runtimes().prepare(base_runtime="tart")
    assert summary and "answered" in summary
    lab.assert_clean()


def test_a_group_prepare_does_nothing_and_reset_has_nothing_to_remove(lab: TartLab) -> None:
    lab.group("g1")
    assert lab.runtimes().prepare("g1") is None
    assert lab.runtimes().reset("g1") == []


def test_settings_defaults_are_valid() -> None:
    settings = TartSettings()
    assert settings.max_running == 2 and settings.spare is False
