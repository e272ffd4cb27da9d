"""What a run can and cannot do: host files never privileged, masks locked, nothing of one
run visible to the next, the guest's kernel out of reach."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from .conftest import QemuProject, needs_qemu

pytestmark = [pytest.mark.slow, needs_qemu]

SANDBOX_UID = 1_000_000_000


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox user differs from the invoking user only as root"
)
def test_files_guest_root_leaves_on_the_host_are_never_privileged(qproject: QemuProject) -> None:
    ws = qproject.group("dev")
    script = (
        "cd /workspace/group; echo x > file; chmod 4755 file; mkdir dir; chown 1000:1000 dir; "
        "mknod dev c 1 3 && echo MKNOD-WORKED; mknod fifo p; "
        "cp /bin/busybox suid; chmod 6755 suid; ls -ln"
    )
    result, rec = qproject.command("dev", script)
    assert result.exit_code == 0, (result.error_message(), rec.stderr)
    assert b"MKNOD-WORKED" not in rec.stdout
    assert not (ws / "dev").exists()
    f = (ws / "file").stat()
    assert (f.st_uid, f.st_gid) == (SANDBOX_UID, SANDBOX_UID)
    assert f.st_mode & stat.S_ISUID  # setuid, but of the unprivileged sandbox user
    d = (ws / "dir").stat()
    assert (d.st_uid, d.st_gid) == (SANDBOX_UID + 1000, SANDBOX_UID + 1000)
    s = (ws / "suid").stat()
    assert s.st_uid == SANDBOX_UID and s.st_uid != 0
    for entry in ws.rglob("*"):
        if entry.relative_to(ws).parts[0] == "logs":
            continue  # the host's run logs
        st = entry.lstat()
        assert st.st_uid != 0 and st.st_gid != 0, entry
        assert not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)), entry


def test_read_only_share_stays_read_only_even_remounted(qproject: QemuProject) -> None:
    qproject.group("dev")
    script = (
        "mount -o remount,rw /workspace/global 2>/dev/null; "
        "echo x > /workspace/global/wrote 2>/dev/null && echo WROTE; true"
    )
    result, rec = qproject.command("dev", script)
    assert result.exit_code == 0, result.error_message()
    assert b"WROTE" not in rec.stdout
    assert not (qproject.root / "groups" / "global" / "wrote").exists()


def test_config_json_is_read_only_and_cannot_be_unmasked(qproject: QemuProject) -> None:
    config = {"containerConfig": {"timeout": 120000}}
    ws = qproject.group("dev", config)
    before = (ws / "config.json").read_bytes()
    script = (
        "cat /workspace/group/config.json; echo; "
        "echo x >> /workspace/group/config.json 2>/dev/null && echo WROTE; "
        "umount /workspace/group/config.json 2>/dev/null && echo UNMOUNTED; "
        "umount -l /workspace/group/config.json 2>/dev/null && echo UNMOUNTED; "
        "mount -o remount,bind,rw /workspace/group/config.json 2>/dev/null && echo REMOUNTED; "
        "rm -f /workspace/group/config.json 2>/dev/null && echo REMOVED; "
        "mv /workspace/group/config.json /workspace/group/c2 2>/dev/null && echo MOVED; "
        "mkdir -p /mnt/g && mount --bind /workspace/group /mnt/g 2>/dev/null && echo BOUND; "
        "true"
    )
    result, rec = qproject.command("dev", script)
    assert result.exit_code == 0, (result.error_message(), rec.stderr)
    out = rec.stdout.decode()
    assert json.loads(out.splitlines()[0]) == config
    for word in ("WROTE", "UNMOUNTED", "REMOUNTED", "REMOVED", "MOVED", "BOUND"):
        assert word not in out, out
    assert (ws / "config.json").read_bytes() == before


def test_the_guest_kernel_is_out_of_reach(qproject: QemuProject) -> None:
    qproject.group("dev")
    script = (
        "cat /proc/sys/kernel/modules_disabled; "
        "echo '|/bin/sh' > /proc/sys/kernel/core_pattern 2>/dev/null && echo CORE; "
        "mount -o remount,rw /proc/sys 2>/dev/null && echo PROCSYS; "
        "echo x > /sys/kernel/uevent_helper 2>/dev/null && echo SYSFS; "
        "ls /dev; ls /sys/class/virtio-ports >/dev/null 2>&1; "
        "mknod /tmp/vda b 254 0 2>/dev/null && echo BLOCKDEV; "
        "insmod /nonexistent 2>/dev/null; "
        "id -u; hostname"
    )
    result, rec = qproject.command("dev", script)
    assert result.exit_code == 0, (result.error_message(), rec.stderr)
    lines = rec.stdout.decode().split()
    assert lines[0] == "1"
    for word in ("CORE", "PROCSYS", "SYSFS", "BLOCKDEV"):
        assert word not in lines
    assert not any(
        name.startswith(("vport", "vd", "hvc", "console", "mem", "port")) for name in lines
    )
    assert {"null", "zero", "urandom", "pts", "shm"} <= set(lines)
    assert lines[-2:] == ["0", "dev"]


def _extents_contain(path: Path, needle: bytes) -> bool:
    from nanoclaw_runtime_vibe import cow

    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        for offset, length in cow.data_extents(f.fileno(), size):
            f.seek(offset)
            left = length
            tail = b""
            while left > 0:
                chunk = f.read(min(left, 8 * 2**20))
                if not chunk:
                    break
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle) :]
                left -= len(chunk)
    return False


def _tree_contains(top: Path, needle: bytes) -> list[Path]:
    found = []
    for folder, _dirs, files in os.walk(top):
        for name in files:
            p = Path(folder) / name
            try:
                if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                    found.append(p)
            except OSError:
                continue
    return found


def test_a_secret_of_one_run_is_invisible_to_the_next(qproject: QemuProject) -> None:
    secret = "sk-test-" + os.urandom(12).hex()
    qproject.group(
        "dev",
        {"containerConfig": {"agentCommand": ["sh", "-c",
            "cat > /tmp/input.json; cp /tmp/input.json /dev/shm/in; "
            "(sleep 1000 &); (export HELD=\"$API_KEY\"; sleep 1001 &); "
            "echo \"$API_KEY\" > /tmp/env; ls /dev/shm"]}},
    )  # fmt: skip
    first, rec = qproject.agent(
        "dev", "remember", secrets={"ANTHROPIC_API_KEY": secret}, host_env={"API_KEY": secret}
    )
    assert first.exit_code == 0, (first.error_message(), rec.stderr)
    assert b"in" in rec.stdout  # the agent did get its input
    check = (
        "env; echo ==; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; "
        "echo ==; ls -a /tmp /dev/shm /run; cat /tmp/* /dev/shm/* 2>/dev/null; "
        'ps -o pid,args; grep -rl "$0" /root /var 2>/dev/null; true'
    )
    second, rec2 = qproject.command("dev", check)
    assert second.exit_code == 0, second.error_message()
    assert secret.encode() not in rec2.stdout + rec2.stderr
    assert b"sleep 100" not in rec2.stdout
    # Nothing the engine wrote holds it: not the VM's state folder, not the disk.
    from nanoclaw_runtime_vibe.qemu import vmstate

    assert _tree_contains(vmstate.vms_dir(), secret.encode()) == []
    assert not _extents_contain(qproject.images / "dev.raw", secret.encode())
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert secret.encode() not in cmdline, f"the secret is in the argv of pid {pid}"


def test_network_only_when_the_group_asks(qproject: QemuProject) -> None:
    qproject.group("dev")
    result, rec = qproject.command("dev", "ls /sys/class/net")
    assert result.exit_code == 0, result.error_message()
    assert rec.stdout.split() == [b"lo"]
    qproject.env["VIBE_NETWORK"] = "true"
    result, rec = qproject.command("dev", "ls /sys/class/net; ip route; cat /etc/resolv.conf; true")
    assert result.exit_code == 0, result.error_message()
    out = rec.stdout.decode()
    assert "eth0" in out and "default via 10.0.2.2" in out


NOBODY = 65534


def _python_for_nobody() -> tuple[list[str], dict[str, str]] | None:
    """An interpreter an unprivileged user can run with this checkout's packages, or None."""
    import shutil
    import subprocess
    import sys
    import sysconfig

    paths = [
        str(Path(__file__).resolve().parents[2]),
        str(Path(__file__).resolve().parents[2] / "plugins" / "vibe"),
        sysconfig.get_paths()["purelib"],
    ]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1"}
    for python in (sys.executable, shutil.which("python3", path="/usr/bin") or ""):
        if not python:
            continue
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python]
        probe = subprocess.run(
            [*argv, "-c", "import nanoclaw_runtime_vibe.qemu.engine"], env={**env, "HOME": "/"},
            capture_output=True, timeout=60,
        )  # fmt: skip
        if probe.returncode == 0:
            return argv, env
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as an unprivileged user")
def test_the_engine_works_for_an_unprivileged_user(shared_images: Path) -> None:
    import tempfile

    found = _python_for_nobody()
    if found is None:
        pytest.skip("no Python interpreter here that an unprivileged user may run")
    top = Path(tempfile.mkdtemp(prefix="nanoclaw-nobody-"))  # pytest's own is root's only
    try:
        _run_as_nobody(top, shared_images, *found)
    finally:
        import shutil

        shutil.rmtree(top, ignore_errors=True)


def _run_as_nobody(top: Path, shared_images: Path, argv: list[str], env: dict[str, str]) -> None:
    import shutil
    import subprocess

    home = top / "nobody"
    images = home / "project" / "data" / "vibe-images"
    (home / "project" / "groups" / "global").mkdir(parents=True)
    (home / "project" / "groups" / "dev").mkdir()
    images.mkdir(parents=True)
    shutil.copyfile(shared_images / "base.raw", images / "base.raw")
    shutil.copytree(shared_images / "kernel", images / "kernel")
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True, timeout=30)
    os.chmod(top, 0o755)
    script = (
        "import os, sys\n"
        "from nanoclaw_runtimes_core import Runtimes\n"
        "rt = Runtimes(sys.argv[1], environ=dict(os.environ))\n"
        "cmd = 'id -u; touch /workspace/group/f; mknod /workspace/group/x c 1 3; echo end'\n"
        "r = rt.execute('dev', command=['sh', '-c', cmd])\n"
        "print(r.exit_code, r.stdout.decode().split())\n"
    )
    run_env = {
        **env, "HOME": str(home), "NANOCLAW_RUNTIMES_LOAD": "vibe", "CONTAINER_RUNTIME": "vibe",
        "VIBE_ENGINE": "qemu", "VIBE_RAM": "256", "VIBE_KEEP_WARM": "0",
    }  # fmt: skip
    proc = subprocess.run(
        [*argv, "-c", script, str(home / "project")], env=run_env, capture_output=True,
        text=True, timeout=200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "0 ['0', 'end']", proc.stdout
    f = (home / "project" / "groups" / "dev" / "f").stat()
    assert (f.st_uid, f.st_gid) == (NOBODY, NOBODY)
    assert not (home / "project" / "groups" / "dev" / "x").exists()


def test_a_link_planted_on_the_disk_is_moved_aside_never_followed(qproject: QemuProject) -> None:
    qproject.group("dev")
    plant, _ = qproject.command("dev", "mv /opt /opt.old && ln -s /etc /opt && echo planted")
    assert plant.exit_code == 0, plant.error_message()
    result, rec = qproject.command(
        "dev", "[ -L /opt ] && echo LINK; ls /opt/nanoclaw; ls -d /etc/nanoclaw 2>/dev/null; true"
    )
    assert result.exit_code == 0, result.error_message()
    out = rec.stdout.decode().split()
    assert "LINK" not in out and out[0] == "example_agent.py" and "/etc/nanoclaw" not in out
    assert any("moved aside" in p and "/opt" in p for p in rec.problems), rec.problems


@pytest.mark.skipif(os.geteuid() != 0, reason="QEMU switches users only under a root CLI")
def test_qemu_itself_runs_unprivileged_under_seccomp(qproject: QemuProject) -> None:
    """A guest that escaped into QEMU would be a process of an unprivileged user (outside
    the guests' id range, not virtiofsd's), under seccomp, that no other VM can trace."""
    qproject.group("dev")
    result, _ = qproject.command("dev", "true")
    assert result.exit_code == 0, result.error_message()
    pid = int((qproject.vm_folder("dev") / "qemu.pid").read_text())
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    vm_ids = str(SANDBOX_UID + 65536)
    assert status["Uid"].split() == [vm_ids] * 4 and status["Gid"].split() == [vm_ids] * 4
    assert status["Groups"].strip() in ("", vm_ids)
    assert status["Seccomp"].strip() == "2"
    assert int(status["CapEff"], 16) == 0
    # switching ids made it not dumpable: a process of the same user cannot trace it
    assert Path(f"/proc/{pid}/environ").stat().st_uid == 0
