"""The QEMU engine's parts: initramfs, kernel files, command line, probe, hung boots."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from nanoclaw_runtime_vibe.engines import STATUS_MARKER, BaseBuild, BootSpec
from nanoclaw_runtime_vibe.qemu import accel, engine, kernel
from nanoclaw_runtime_vibe.qemu.cpio import CpioWriter

from nanoclaw_runtimes_core.models import Mount, OutputSink
from nanoclaw_runtimes_core.protocol import MarkerDecoder

from .conftest import MISSING, needs_qemu, vm_processes


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed (Debian cpio)")
def test_cpio_archive_lists_with_gnu_cpio(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    with archive.open("wb") as f:
        w = CpioWriter(f)
        w.directory("etc")
        w.file("etc/odd name", b"abc", 0o600)
        w.symlink("etc/link", "odd name")
        w.close()
    out = subprocess.run(
        ["cpio", "-itv"], input=archive.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    assert "etc/odd name" in out and "etc/link -> odd name" in out
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(
        ["cpio", "-id"], input=archive.read_bytes(), cwd=dest, check=True, capture_output=True
    )
    assert (dest / "etc/odd name").read_bytes() == b"abc"


def _share(tag: str, guest: str, ro: bool) -> engine._Share:
    return engine._Share(
        tag=tag, source=Path("/x"), guest=guest, readonly=ro, socket=Path(f"/s/{tag}.sock")
    )


def test_command_line_has_no_network_and_no_defaults(tmp_path: Path) -> None:
    files = kernel.KernelFiles(
        directory=tmp_path, kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd.img", version="v"
    )
    host = accel.HostInfo(accel="tcg", reason="test", tsc_khz=2_000_000)
    argv = engine.qemu_argv(
        "qemu",
        files=files,
        initrd=tmp_path / "i",
        host=host,
        disk=tmp_path / "g,1.raw",
        shares=[_share("fs0", "/workspace/group", False)],
        cpus=3,
        ram_mb=700,
    )
    joined = " ".join(argv)
    assert "-nodefaults" in argv and "-no-user-config" in argv
    assert "-netdev" not in argv and "-nic" not in argv and "-net" not in argv
    assert "tsc_early_khz=2000000" in joined and "tsc=reliable" in joined
    assert "g,,1.raw" in joined  # commas escaped in QEMU options
    assert argv[argv.index("-smp") + 1] == "3"
    assert "memory-backend-memfd,id=mem,size=700M,share=on" in argv
    assert "vhost-user-fs-device,chardev=fs0,tag=fs0" in argv
    kvm = engine.qemu_argv(
        "qemu",
        files=files,
        initrd=tmp_path / "i",
        host=accel.HostInfo(accel="kvm", reason="", tsc_khz=1),
        disk=tmp_path / "d.raw",
        shares=[],
        cpus=1,
        ram_mb=256,
        network="user",
    )
    assert "tsc_early_khz" not in " ".join(kvm) and "-netdev" in kvm


def test_run_config_keeps_odd_guest_paths(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed")
    data = engine.run_config([_share("fs0", "/workspace/extra/a b'c", True)], "/nanoclaw/run/s.sh")
    subprocess.run(["cpio", "-id"], input=data, cwd=tmp_path, check=True, capture_output=True)
    m = tmp_path / "etc/nanoclaw/mounts/000"
    assert (m / "path").read_text() == "/workspace/extra/a b'c"
    assert (m / "mode").read_text() == "ro"
    assert (tmp_path / "etc/nanoclaw/script").read_text() == "/nanoclaw/run/s.sh"


def test_bounded_probe_gives_up_in_time() -> None:
    started = time.monotonic()
    ok, _ = accel.boot_within(["sleep", "30"], kernel.BOOTED, 1.0)
    assert not ok
    assert time.monotonic() - started < 5


def test_tsc_frequency_is_plausible() -> None:
    from nanoclaw_runtime_vibe.qemu.tsc import measure_tsc_khz

    khz = measure_tsc_khz()
    if khz is None:
        pytest.skip("TSC cannot be read on this host")
    assert 100_000 <= khz <= 10_000_000


@needs_qemu
def test_kernel_files_and_minimal_base(tmp_path: Path) -> None:
    qe = engine.QemuEngine()
    summary = qe.build_base(
        BaseBuild(
            target=tmp_path / "base.raw",
            project_root=tmp_path,
            progress=lambda m, f: None,
            options={"minimal": True},
        ),
        settings=SimpleNamespace(),
    )
    assert "minimal" in summary
    base = tmp_path / "base.raw"
    assert base.stat().st_size == 3 * 2**30
    assert base.stat().st_blocks * 512 < 32 * 2**20  # sparse: a few MB, not 3 GiB
    files = kernel.read_kernel_dir(tmp_path / "kernel")
    assert files is not None and files.initrd.stat().st_size > 1_000_000
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    fsck = subprocess.run(["e2fsck", "-fn", str(base)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


@pytest.mark.slow
@needs_qemu
def test_hung_boot_is_detected_killed_and_reported(tmp_path: Path) -> None:
    qe = engine.QemuEngine()
    qe.build_base(
        BaseBuild(
            target=tmp_path / "base.raw",
            project_root=tmp_path,
            progress=lambda m, f: None,
            options={"minimal": True},
        ),
        settings=SimpleNamespace(),
    )
    disk = tmp_path / "g.raw"
    shutil.copyfile(tmp_path / "base.raw", disk)
    run = tmp_path / "run"
    run.mkdir()
    (run / "s.sh").write_text("#!/bin/sh\necho never\n")
    spec = BootSpec(
        disk=disk,
        base=tmp_path / "base.raw",
        cpus=1,
        ram_mb=256,
        script=run / "s.sh",
        run_dir=run,
        mounts=(Mount(host_path=run, container_path="/nanoclaw/run", readonly=True),),
    )
    # -S: the vCPUs never start, like a guest stuck before its first console line
    settings = SimpleNamespace(qemu_extra_args="-S", qemu_boot_timeout=3, qemu_accel="tcg")
    started = time.monotonic()
    result = qe.boot(
        spec,
        settings=settings,
        sink=OutputSink(),
        timeout_ms=600_000,
        decoder=MarkerDecoder(status_marker=STATUS_MARKER),
    )
    took = time.monotonic() - started
    assert took < 30, took
    assert result.exit_code != 0 and not result.timed_out
    assert "did not finish booting within 3 s" in result.stderr_tail
    assert vm_processes(str(tmp_path)) == []
    from nanoclaw_runtime_vibe.run import interpret

    assert "did not finish booting" in (interpret(result, "qemu").error or "")


def test_skip_reason_is_specific() -> None:
    assert MISSING is None or any(w in MISSING for w in ("install", "root", "not"))
