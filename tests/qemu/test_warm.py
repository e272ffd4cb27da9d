"""Warm VMs: kept booted between runs, replaced when they do not fit or do not answer, powered
off by the guest at its idle end whatever became of the host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from .conftest import QemuProject, needs_qemu, vm_processes, wait_until

pytestmark = [pytest.mark.slow, needs_qemu]


def pid_of(qproject: QemuProject, group: str) -> int | None:
    vm = qproject.warm().get(group)
    return vm.pid if vm else None


def test_warm_then_cold_then_warm_across_a_reset(qproject: QemuProject) -> None:
    qproject.group("dev")
    first, rec = qproject.command("dev", "echo one")
    assert first.exit_code == 0 and rec.stdout == b"one\n", first.error_message()
    booted = pid_of(qproject, "dev")
    assert booted is not None
    _second, rec2 = qproject.command("dev", "echo two")
    assert rec2.stdout == b"two\n"
    assert pid_of(qproject, "dev") == booted, "the second run did not reuse the warm VM"
    assert not any("booting" in p for p in rec2.problems), rec2.problems

    stopped = qproject.runtimes().reset("dev", scope="warm")
    assert any("powered off" in line for line in stopped), stopped
    assert pid_of(qproject, "dev") is None
    assert not qproject.vm_folder("dev").exists()
    assert (qproject.images / "dev.raw").exists(), "a warm reset must keep the disk"

    third, rec3 = qproject.command("dev", "echo three")
    assert rec3.stdout == b"three\n", third.error_message()
    rebooted = pid_of(qproject, "dev")
    assert rebooted not in (None, booted)
    _fourth, rec4 = qproject.command("dev", "echo four")
    assert rec4.stdout == b"four\n"
    assert pid_of(qproject, "dev") == rebooted, (rec3.problems, rec4.problems)


def test_idle_power_off_leaves_nothing_and_a_clean_disk(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.env["VIBE_KEEP_WARM"] = "1500"
    result, rec = qproject.command("dev", "echo data > /root/kept; sync; echo ok")
    assert rec.stdout == b"ok\n", result.error_message()
    assert pid_of(qproject, "dev") is not None
    assert wait_until(lambda: not qproject.vm_folder("dev").exists(), 40), "no power-off"
    assert vm_processes(str(qproject.images)) == []
    fsck = subprocess.run(
        ["e2fsck", "-fn", str(qproject.images / "dev.raw")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    again, rec2 = qproject.command("dev", "cat /root/kept")
    assert rec2.stdout == b"data\n", again.error_message()


def test_keep_warm_zero_powers_off_after_the_run(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.env["VIBE_KEEP_WARM"] = "0"
    result, rec = qproject.command("dev", "echo once")
    assert rec.stdout == b"once\n", result.error_message()
    assert pid_of(qproject, "dev") is None
    assert not qproject.vm_folder("dev").exists()
    assert vm_processes(str(qproject.images)) == []


HOST = textwrap.dedent(
    """
    import os, sys, time
    from nanoclaw_runtimes_core import Runtimes
    rt = Runtimes(sys.argv[1], environ=dict(os.environ))
    r = rt.execute("dev", command=["sh", "-c", sys.argv[2]])
    print("ran", r.exit_code, flush=True)
    time.sleep(600)
    """
)


def test_host_sigkilled_between_runs_vm_still_powers_off(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.env["VIBE_KEEP_WARM"] = "3000"
    env = {**os.environ, **qproject.env}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(qproject.root), "echo hi"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "ran 0"
        assert pid_of(qproject, "dev") is not None
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        assert pid_of(qproject, "dev") is not None, "the VM died with its host process"
        assert wait_until(lambda: not qproject.vm_folder("dev").exists(), 40)
        assert vm_processes(str(qproject.images)) == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    result, rec = qproject.command("dev", "echo next")
    assert rec.stdout == b"next\n", result.error_message()


def test_host_sigkilled_during_a_run(qproject: QemuProject) -> None:
    """The guest ends the run whose host went away; the VM stays usable; the next run sees
    nothing of the killed one."""
    ws = qproject.group("dev")
    env = {**os.environ, **qproject.env}
    script = "echo started > /workspace/group/started; exec sleep 300"
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(qproject.root), script], env=env, stdout=subprocess.PIPE
    )
    try:
        assert wait_until(lambda: (ws / "started").exists(), 90)
        booted = pid_of(qproject, "dev")
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    result, rec = qproject.command("dev", "ps -o comm | grep -c sleep; true")
    assert result.exit_code == 0, result.error_message()
    assert rec.stdout.strip() == b"0"
    assert pid_of(qproject, "dev") == booted, "the VM should have stayed warm"


def test_vm_killed_while_idle_next_run_boots_cold_and_says_so(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.command("dev", "true")
    pid = pid_of(qproject, "dev")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not _alive(pid), 10)
    result, rec = qproject.command("dev", "echo after")
    assert rec.stdout == b"after\n", result.error_message()
    assert any("was gone" in p and "signal 9" in p for p in rec.problems), rec.problems
    assert pid_of(qproject, "dev") not in (None, pid)


def test_other_boot_settings_replace_the_warm_vm(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.command("dev", "true")
    pid = pid_of(qproject, "dev")
    qproject.env["VIBE_RAM"] = "320"
    result, rec = qproject.command("dev", "echo changed")
    assert rec.stdout == b"changed\n", result.error_message()
    assert any("other settings" in p for p in rec.problems), rec.problems
    assert pid_of(qproject, "dev") not in (None, pid)
    assert not _alive(pid)


def test_hung_vm_is_replaced(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.command("dev", "true")
    pid = pid_of(qproject, "dev")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # QEMU frozen: it accepts nothing, answers nothing
    try:
        result, rec = qproject.command("dev", "echo fresh")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert rec.stdout == b"fresh\n", result.error_message()
    assert any("did not answer" in p for p in rec.problems), rec.problems
    assert wait_until(lambda: not _alive(pid), 10)


def test_four_concurrent_runs_are_serialised_and_not_mixed(qproject: QemuProject) -> None:
    qproject.group("dev")
    qproject.command("dev", "true")
    booted = pid_of(qproject, "dev")
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            script = (
                f"echo start-{i} >> /workspace/group/log; i=0; "
                f"while [ $i -lt 200 ]; do echo run-{i}-line-$i; i=$((i+1)); done; "
                f"sleep 0.3; echo end-{i} >> /workspace/group/log"
            )
            results[i] = qproject.command("dev", script)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=200)
    assert not errors, errors
    for i in range(4):
        result, rec = results[i]  # type: ignore[misc]
        assert result.exit_code == 0, result.error_message()
        lines = rec.stdout.decode().splitlines()
        assert lines == [f"run-{i}-line-{n}" for n in range(200)]
    log = (qproject.root / "groups" / "dev" / "log").read_text().split()
    for n in range(0, 8, 2):  # start-X is always followed by its own end-X
        assert log[n].split("-")[1] == log[n + 1].split("-")[1], log
    assert pid_of(qproject, "dev") == booted


def test_timeout_of_a_warm_run_ends_its_processes(qproject: QemuProject) -> None:
    ws = qproject.group("dev")
    qproject.command("dev", "true")
    booted = pid_of(qproject, "dev")
    script = "( while true; do date +%s%N >> /workspace/group/ticks; sleep 0.1; done ) & sleep 300"
    started = time.monotonic()
    result, _ = qproject.command("dev", script, timeout_ms=3000)
    assert result.timed_out
    assert time.monotonic() - started < 30
    size = (ws / "ticks").stat().st_size
    time.sleep(1.0)
    assert (ws / "ticks").stat().st_size == size, "a process of the timed-out run lives on"
    again, rec = qproject.command("dev", "echo usable")
    assert rec.stdout == b"usable\n", again.error_message()
    assert booted is not None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.deadline(180)
def test_a_killed_base_build_leaves_only_what_the_next_run_sweeps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import MISSING

    assert MISSING is None
    root = tmp_path / "project"
    (root / "groups" / "global").mkdir(parents=True)
    (root / "groups" / "dev").mkdir()
    env = {**os.environ, "NANOCLAW_RUNTIMES_LOAD": "vibe", "VIBE_ENGINE": "qemu",
           "CONTAINER_RUNTIME": "vibe"}  # fmt: skip
    build = textwrap.dedent(
        """
        import os, sys
        from nanoclaw_runtimes_core import Runtimes
        Runtimes(sys.argv[1], environ=dict(os.environ)).prepare(
            base_runtime="vibe", options={"minimal": True}, force=True)
        """
    )
    images = root / "data" / "vibe-images"
    proc = subprocess.Popen([sys.executable, "-c", build, str(root)], env=env)
    try:
        assert wait_until(lambda: images.is_dir() and any(images.iterdir()), 60, 0.01)
        time.sleep(0.2)  # inside the build
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = [p.name for p in images.iterdir() if p.name not in (".kernel.lock",)]
    assert "base.raw" not in leftovers or (images / "base.raw.info.json").exists()
    assert all(name.startswith(".") for name in leftovers if name != "base.raw"), leftovers
    from nanoclaw_runtimes_core import Runtimes

    rt = Runtimes(root, environ=env)
    rt.prepare(base_runtime="vibe", options={"minimal": True}, force=True)
    result = rt.execute("dev", command=["true"])
    assert result.exit_code == 0, result.error_message()
    rt.reset("dev", scope="warm")
    names = {p.name for p in images.iterdir()}
    assert not [n for n in names if ".build-" in n or ".partial-" in n], names
    assert {"base.raw", "base.raw.info.json", "kernel", "dev.raw"} <= names


def test_a_boot_that_fails_says_why_and_leaves_nothing(qproject: QemuProject) -> None:
    import nanoclaw_runtimes_core as nc

    qproject.group("dev")
    qproject.env["VIBE_KEEP_WARM"] = "0"
    qproject.command("dev", "true")  # the group's disk exists
    disk = qproject.images / "dev.raw"
    size = disk.stat().st_size
    with disk.open("r+b") as f:  # no file system any more
        f.truncate(0)
        f.truncate(size)
    with pytest.raises(nc.EngineUnavailable, match="cannot mount the disk"):
        qproject.command("dev", "true")
    assert not qproject.vm_folder("dev").exists()
    assert vm_processes(str(qproject.images)) == []


def test_a_boot_that_hangs_is_killed_and_tried_once_more(
    qproject: QemuProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rare TCG boot hang must not fail the run: the hung VM is killed, nothing of it is
    left, a second boot serves the run, and the run says so. (The hang is a real boot given
    too little time.)"""
    from nanoclaw_runtime_vibe.qemu import launch

    real_boot = launch.boot
    boots: list[float] = []

    def hang_first(plan: launch.BootPlan, folder):  # type: ignore[no-untyped-def]
        boots.append(plan.boot_timeout_s)
        if len(boots) == 1:
            return real_boot(plan.replace(boot_timeout_s=0.2), folder)
        return real_boot(plan, folder)

    monkeypatch.setattr(launch, "boot", hang_first)
    qproject.group("dev")
    result, rec = qproject.command("dev", "echo served")
    assert result.exit_code == 0 and rec.stdout == b"served\n", result.error_message()
    assert len(boots) == 2
    retried = [p for p in rec.problems if "booting it once more" in p]
    assert len(retried) == 1 and "did not finish booting within 0 s" in retried[0], rec.problems
    assert "console:" not in retried[0]  # the reason, not the whole console
    qemus = [p for p in vm_processes(str(qproject.images)) if "qemu-system" in p.split()[0]]
    assert len(qemus) == 1  # the second VM only: the hung one was killed


def test_the_disk_is_locked_for_the_vms_whole_life(qproject: QemuProject) -> None:
    import fcntl

    from nanoclaw_runtime_vibe import images

    import nanoclaw_runtimes_core as nc

    qproject.group("dev")
    qproject.command("dev", "true")
    disk = qproject.images / "dev.raw"
    assert images.disk_in_use(disk), "a warm VM must hold its disk's lock"
    qproject.runtimes().reset("dev", scope="warm")
    assert not images.disk_in_use(disk)
    fd = os.open(images.disk_lock_path(disk), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another VM of this disk would
        with pytest.raises(nc.UserError, match="in use by another VM"):
            qproject.command("dev", "true")
    finally:
        os.close(fd)
    assert not qproject.vm_folder("dev").exists()
    result, rec = qproject.command("dev", "echo free")
    assert rec.stdout == b"free\n", result.error_message()
