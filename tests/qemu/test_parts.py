"""The QEMU engine's parts, without booting: the command line, the control protocol, the
stream framing, the minimal base's agent, the kernel files, status."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from nanoclaw_runtime_vibe.qemu import accel, channel, confine, kernel, launch, runner
from nanoclaw_runtime_vibe.qemu.virtiofs import Share

import nanoclaw_runtimes_core as nc

from .conftest import MISSING


def _plan(tmp_path: Path, **kw: object) -> launch.BootPlan:
    files = kernel.KernelFiles(
        directory=tmp_path, kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd.img", version="v"
    )
    values: dict[str, object] = {
        "qemu": "qemu",
        "daemon": "virtiofsd",
        "files": files,
        "host": accel.HostInfo(
            accel="tcg",
            reason="test",
            tsc_khz=2_000_000,
            confinement=confine.Confinement(seccomp=True, drop_flag="-runas"),
        ),
        "disk": tmp_path / "g,1.raw",
        "disk_lock": tmp_path / ".g.lock",
        "shares": (Share(tag="fs0", source=tmp_path, guest="/workspace/group", readonly=False),),
        "cpus": 2,
        "ram_mb": 512,
        "network": False,
        "keep_warm_ms": 1234,
        "user": nc.SandboxUser(uid=1000, gid=1000),
        "group": "dev",
        "boot_key": "k",
        "boot_timeout_s": 30.0,
        "debug": False,
    }
    values.update(kw)
    return launch.BootPlan(**values)  # type: ignore[arg-type]


def test_command_line_has_no_network_no_defaults_and_the_console_last(tmp_path: Path) -> None:
    argv = launch.qemu_argv(_plan(tmp_path))
    line = " ".join(argv)
    assert "-nodefaults" in argv and "-no-user-config" in argv
    assert "netdev" not in line and "virtio-net" not in line
    assert "file=" + str(tmp_path / "g,,1.raw") in line  # commas doubled
    assert "isa-debug-exit,iobase=0xf4" in line
    for name in ("nanoclaw.ctl", "nanoclaw.stdin", "nanoclaw.stdout", "nanoclaw.stderr"):
        assert f"name={name}" in line
    assert "vhost-user-fs-device,chardev=fs0,tag=fs0" in line
    append = argv[argv.index("-append") + 1]
    assert "nanoclaw.idle=1234" in append and "tsc_early_khz=2000000" in append
    assert "quiet" in append and "nanoclaw.net" not in append
    assert argv[-4:] == [
        "-chardev",
        "socket,id=con,path=con.sock,server=on,wait=on",
        "-serial",
        "chardev:con",
    ]


def test_a_root_cli_confines_qemu_or_refuses_to_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(confine.os, "geteuid", lambda: 0)
    sandbox = nc.SandboxUser(uid=10**9, gid=10**9 + 7, source="NANOCLAW_SANDBOX_USER")

    def argv_with(drop: str | None, seccomp: bool = True) -> list[str]:
        host = accel.HostInfo(
            accel="tcg",
            reason="test",
            tsc_khz=None,
            confinement=confine.Confinement(seccomp=seccomp, drop_flag=drop),
        )
        return launch.qemu_argv(_plan(tmp_path, host=host, user=sandbox))

    argv = argv_with("-runas")
    assert argv[argv.index("-runas") + 1] == "1000065536:1000065543"
    assert argv[argv.index("-sandbox") + 1] == confine.SECCOMP
    argv = argv_with("-run-with", seccomp=False)
    assert argv[argv.index("-run-with") + 1] == "user=1000065536:1000065543"
    assert "-sandbox" not in argv
    with pytest.raises(nc.EngineUnavailable, match="would run as root"):
        argv_with(None)
    # the invoking user (a non-root CLI) keeps its own ids
    plain = launch.qemu_argv(_plan(tmp_path))
    assert "-runas" not in plain and "-run-with" not in plain


def test_confinement_probe_asks_the_binary(tmp_path: Path) -> None:
    assert confine.probe("/bin/false") == confine.Confinement(seccomp=False, drop_flag=None)
    assert confine.probe(str(tmp_path / "missing")).drop_flag is None
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is not None:  # -runas uid:gid since QEMU 5.0, -run-with user= since 9.1
        assert confine.probe(qemu).drop_flag in ("-runas", "-run-with")


def test_network_means_user_mode_nat(tmp_path: Path) -> None:
    argv = launch.qemu_argv(_plan(tmp_path, network=True))
    assert "user,id=net0" in argv and "virtio-net-device,netdev=net0" in argv
    assert "nanoclaw.net" in argv[argv.index("-append") + 1]


def _request(**kw: object) -> runner.Request:
    values: dict[str, object] = {
        "argv": ("sh", "-c", "echo 'x y'"),
        "env": (("API_KEY", "s3cr3t value\n"),),
        "stdin": b'{"prompt":"p"}',
        "workdir": "/workspace/group",
        "hostname": "dev",
        "not_found": "missing",
        "shares": (("fs0", "/workspace/group", False), ("fs1", "/workspace/global", True)),
        "files": (("/workspace/group/config.json", b"{}"),),
        "folders": ("/workspace/project/secrets",),
        "keep_warm_ms": 5000,
        "agent_mode": True,
        "timeout_ms": 1000,
    }
    values.update(kw)
    return runner.Request(**values)  # type: ignore[arg-type]


def test_request_lines_carry_every_value_hex_encoded_one_per_line() -> None:
    token = bytes(range(16))
    lines = _request().lines(token)
    assert lines[0] == f"R {token.hex()} 14 5000" and lines[-1] == "g"
    assert all("\n" not in line for line in lines)
    assert f"e {b'API_KEY=s3cr3t value'.hex()}0a" in lines
    assert "s3cr3t" not in "".join(lines)
    assert f"m fs1 ro {b'/workspace/global'.hex()}" in lines
    assert f"f {b'/workspace/group/config.json'.hex()} {b'{}'.hex()}" in lines
    assert f"d {b'/workspace/project/secrets'.hex()}" in lines


def test_not_found_message_names_the_setting_in_agent_mode() -> None:
    assert "containerConfig.agentCommand" in runner.not_found_message(["claude"], True)
    assert "containerConfig" not in runner.not_found_message(["foo"], False)


class FakeGuest:
    """Four listening sockets in a folder, answered as the guest would (and wrongly first)."""

    def __init__(self, folder: Path) -> None:
        self.listeners = {}
        for _port, name in channel.PORTS:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(folder / name))
            s.listen(1)
            self.listeners[name] = s
        self.conns: dict[str, socket.socket] = {}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for name, s in self.listeners.items():
            self.conns[name] = s.accept()[0]
        ctl = self.conns[channel.CTL]
        ctl.sendall(b"x 0 0 0\nh stale-nonce 1\n")  # an earlier session's lines
        pending = b""
        while b"H " not in pending:
            pending += ctl.recv(4096)
        nonce = pending.split(b"H ", 1)[1].split(b"\n", 1)[0]
        ctl.sendall(b"h " + nonce + b" 4242\n")


def test_handshake_skips_an_earlier_sessions_lines(tmp_path: Path) -> None:
    fake = FakeGuest(tmp_path)
    fd = channel.open_folder(tmp_path)
    try:
        ch = channel.Channel(fd)
        assert ch.handshake(5.0) == 4242
        ch.close()
    finally:
        os.close(fd)
    fake.thread.join(5)


def test_stream_reader_drops_what_precedes_the_token_and_counts_the_rest() -> None:
    a, b = socket.socketpair()
    token = os.urandom(16)
    got: list[bytes] = []
    reader = channel.StreamReader(a, token, got.append)
    payload = os.urandom(300_000)
    b.sendall(b"stale bytes of a dead host" + token[:7])
    b.sendall(token[7:] + payload[:1000])
    b.sendall(payload[1000:])
    assert reader.wait_for(len(payload), 5)
    b.close()
    reader.thread.join(5)
    assert b"".join(got) == payload and reader.count == len(payload)


BUSYBOX = shutil.which("busybox")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed (busybox-static)")
def test_minimal_agent_answers_in_valid_json_whatever_the_prompt() -> None:
    script = kernel.guest_file("minimal-agent.sh").decode()
    prompt = 'a "quoted" \\ back\nslash\ttab \u2603 {"prompt": "inner"}'
    data = {"prompt": prompt, "groupFolder": "g", "chatJid": "c", "isMain": False,
            "extra": {"nested": ["}", {"a": "]"}]}, "sessionId": "s-1"}  # fmt: skip
    out = subprocess.run(
        [BUSYBOX, "sh", "-c", script], input=json.dumps(data).encode(), capture_output=True,
        timeout=30, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    decoder = nc.MarkerDecoder()
    blocks = [e.output for e in decoder.feed(out) if hasattr(e, "output")]
    assert len(blocks) == 2
    assert prompt in (blocks[0].result or "")
    assert blocks[1].new_session_id == "s-1"


def test_guest_digest_changes_with_the_guest_program(monkeypatch: pytest.MonkeyPatch) -> None:
    before = kernel.guest_digest()
    real = kernel.guest_file
    monkeypatch.setattr(kernel, "guest_file", lambda name: real(name) + b"/* changed */")
    assert kernel.guest_digest() != before


@pytest.mark.skipif(MISSING is not None, reason=f"QEMU engine unavailable: {MISSING}")
def test_status_reports_the_parts_and_the_isolation() -> None:
    from nanoclaw_runtime_vibe.qemu import QemuEngine
    from nanoclaw_runtime_vibe.settings import VibeSettings

    status = QemuEngine().status(VibeSettings())
    assert status.available, status.detail
    assert status.isolation == {"filesystem", "pid", "network", "masks"}
    for part in ("guest kernel", "virtiofsd", "acceleration", "warm runs: yes"):
        assert part in status.detail
    missing = QemuEngine().status(VibeSettings(qemu_binary="/nonexistent/qemu"))
    assert not missing.available and "apt-get install qemu-system-x86" in missing.fix
