"""The vibe stand-in reproduces the real vibe (src/main.rs): its refusals, its quirks, and the
unsafe things it does that the runtime must never expose (unquoted typed mount lines)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import STANDIN, needs_bwrap


def vibe(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(cwd / "home"),
        "TMPDIR": str(cwd / "tmp"),
        "VIBE_STANDIN_STATE": str(cwd / "state"),
        **(env or {}),
    }
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [str(STANDIN), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def here(tmp_path: Path) -> Path:
    disk = tmp_path / "d.raw"
    with open(disk, "wb") as f:
        f.truncate(64 * 2**20)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["--version", "--bogus"], "Error: invalid option '--bogus'\n"),
        (["--cpus", "0", "d.raw"], 'Error: "--cpus must be >= 1"\n'),
        (["--ram", "0", "d.raw"], 'Error: "--ram must be >= 1"\n'),
        (["--ram=0"], 'Error: "--ram must be >= 1"\n'),
        (["--cpus", "-1"], "Error: ParseIntError { kind: InvalidDigit }\n"),
        (["--cpus", ""], "Error: ParseIntError { kind: Empty }\n"),
        (["--ram", "99999999999999999999999"], "Error: ParseIntError { kind: PosOverflow }\n"),
        (["--cpus"], "Error: missing argument for option '--cpus'\n"),
        (["--help=x"], "Error: unexpected argument for option '--help': \"x\"\n"),
        (["-hx"], "Error: invalid option '-x'\n"),
        (["a.raw", "b.raw"], 'Error: "Only one disk path may be provided"\n'),
        (["--expect", "foo", "5", "d.raw"], 'Error: "Only one disk path may be provided"\n'),
        (
            ["--no-default-mounts", "missing.raw"],
            'Error: "Disk image does not exist: missing.raw"\n',
        ),
        (["--mount", "a", "d.raw"], 'Error: "Invalid mount spec: a"\n'),
        (["--mount", "a:b:c:d", "d.raw"], 'Error: "Invalid mount spec: a:b:c:d"\n'),
        (
            ["--mount", "/tmp:/x:rw", "d.raw"],
            "Error: \"Invalid mount mode 'rw'; expected read-only or read-write\"\n",
        ),
        (["--mount", "/nope:/x", "d.raw"], 'Error: "Host path does not exist: /nope"\n'),
    ],
)
def test_refusals_print_vibes_messages_and_exit_1(here: Path, args: list[str], stderr: str) -> None:
    proc = vibe(*args, cwd=here)
    assert (proc.returncode, proc.stderr) == (1, stderr)


def test_version_and_help(here: Path) -> None:
    proc = vibe("--version", cwd=here)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["Vibe", "https://github.com/lynaghk/vibe/"]
    assert lines[2].startswith("Git SHA: ") and lines[3].startswith("Built: ")
    proc = vibe("-h", cwd=here)
    assert proc.returncode == 0 and "vibe [OPTIONS] [disk-image.raw]" in proc.stdout
    assert proc.stdout.endswith("\n\n")  # println! adds a line after the text's own


def test_missing_home_is_not_present(here: Path) -> None:
    proc = subprocess.run(
        [str(STANDIN), "--no-default-mounts", "d.raw"],
        cwd=here,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stderr) == (1, "Error: NotPresent\n")


def test_nat_on_macos_before_26_asks_for_vmnet_helper_and_exits_1(here: Path) -> None:
    proc = vibe("--no-default-mounts", "d.raw", cwd=here)
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        "On MacOS < 26, vmnet-helper must be run as root to provide networking."
    )
    proc = vibe("--no-default-mounts", "--network", "none", "d.raw", cwd=here)
    assert proc.returncode == 1 and "vmnet-helper must be run as root" in proc.stdout
    proc = vibe(
        "--no-default-mounts",
        "--network",
        "none",
        "d.raw",
        cwd=here,
        env={"VIBE_STANDIN_MACOS": "26"},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Shared interface 'none' is not available. Available interfaces:")


def test_a_file_as_share_panics_with_101_after_the_efi_store_is_made(here: Path) -> None:
    (here / "f").write_text("x")
    proc = vibe(
        "--no-default-mounts", "--network", "vznat", "--mount", f"{here}/f:/x", "d.raw", cwd=here
    )
    assert proc.returncode == 101
    assert "panicked at src/main.rs:933:17:" in proc.stderr
    assert f'path does not exist or is not a directory: "{here}/f"' in proc.stderr
    assert len(list((here / "tmp").glob("efi_variable_store_*.efivars"))) == 1


def test_too_many_cpus_is_an_invalid_configuration(here: Path) -> None:
    n = (os.cpu_count() or 1) + 1
    proc = vibe("--no-default-mounts", "--network", "vznat", "--cpus", str(n), "d.raw", cwd=here)
    assert proc.returncode == 1
    assert proc.stderr.startswith('Error: Custom { kind: Other, error: "Invalid VM configuration: ')


@needs_bwrap
def test_script_runs_by_path_exit_0_whatever_its_status_state_on_the_disk(here: Path) -> None:
    share = here / "share"
    share.mkdir()
    (here / "s.sh").write_text(
        "echo ran as $0; echo kept > /root/kept; echo out > /root/x/written; "
        "systemctl poweroff; exit 7\n"
    )
    proc = vibe(
        "--no-default-mounts", "--network", "vznat", "--mount", f"{share}:x", "--script",
        "s.sh", "d.raw", cwd=here,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    console = proc.stdout.replace("\r\n", "\n")
    assert "cat >/tmp/vibe-scripts/0_s.sh.sh <<'VIBE_SCRIPT_EOF'" in console
    assert "ran as /tmp/vibe-scripts/0_s.sh.sh" in console
    assert " mkdir -p /root/x" in console  # a relative guest path goes under /root
    assert (share / "written").read_text() == "out\n"
    assert "VM booting..." in console
    (here / "s2.sh").write_text("cat /root/kept; poweroff\n")
    proc = vibe("--no-default-mounts", "--network", "vznat", "--script", "s2.sh", "d.raw", cwd=here)
    assert "\nkept\n" in proc.stdout.replace("\r\n", "\n")  # the disk kept the guest's file
    efivars = list((here / "tmp").glob("efi_variable_store_*.efivars"))
    assert len(efivars) == 2  # one per boot, never removed (vibe leaves them too)


@needs_bwrap
def test_mount_lines_are_typed_unquoted_so_a_hostile_path_runs_in_the_guest(here: Path) -> None:
    """What the runtime must never let happen: vibe types the guest path as shell text."""
    share = here / "share"
    share.mkdir()
    (here / "s.sh").write_text("ls /root/pwned && echo PWNED-IN-GUEST; poweroff\n")
    vibe(
        "--no-default-mounts", "--network", "vznat",
        "--mount", f"{share}:/a;touch${{IFS}}/root/pwned", "--script", "s.sh", "d.raw", cwd=here,
    )  # fmt: skip
    proc = vibe("--no-default-mounts", "--network", "vznat", "--script", "s.sh", "d.raw", cwd=here)
    assert "PWNED-IN-GUEST" in proc.stdout


@needs_bwrap
def test_two_mounts_of_one_host_path_share_a_tag_and_the_last_mode_wins(here: Path) -> None:
    share = here / "share"
    share.mkdir()
    (here / "s.sh").write_text("echo a > /rw/a; echo $? > /root/st; poweroff\n")
    (here / "s2.sh").write_text("cat /root/st; poweroff\n")
    vibe(
        "--no-default-mounts", "--network", "vznat", "--mount", f"{share}:/rw:read-write",
        "--mount", f"{share}:/ro:read-only", "--script", "s.sh", "d.raw", cwd=here,
    )  # fmt: skip
    assert not (share / "a").exists()
    boots = [json.loads(x) for x in (here / "state" / "boots.jsonl").read_text().splitlines()]
    tags = {m["tag"] for m in boots[0]["mounts"]}
    assert len(tags) == 1 and next(iter(tags)).startswith("share_")


@needs_bwrap
def test_a_script_with_the_marker_is_refused_and_vibe_hangs(here: Path) -> None:
    (here / "s.sh").write_text("echo VIBE_SCRIPT_EOF\npoweroff\n")
    with pytest.raises(subprocess.TimeoutExpired) as info:
        vibe(
            "--no-default-mounts",
            "--network",
            "vznat",
            "--script",
            "s.sh",
            "d.raw",
            cwd=here,
            timeout=4,
        )
    err = info.value.stderr or b""
    assert b"Script '0_s.sh' contains marker 'VIBE_SCRIPT_EOF', cannot safely upload" in err


@needs_bwrap
def test_an_unreadable_script_is_reported_and_vibe_hangs(here: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as info:
        vibe(
            "--no-default-mounts",
            "--network",
            "vznat",
            "--script",
            "gone.sh",
            "d.raw",
            cwd=here,
            timeout=4,
        )
    assert b"Failed to read script gone.sh: No such file or directory (os error 2)" in (
        info.value.stderr or b""
    )


@needs_bwrap
@pytest.mark.slow
def test_an_expect_that_never_matches_times_out_with_vibes_message(here: Path) -> None:
    start = time.monotonic()
    proc = vibe(
        "--no-default-mounts", "--network", "vznat", "--expect", "never-printed", "d.raw",
        cwd=here, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.endswith(
        "Error: \"Login action (expect 'never-printed') timed out after 30s; shutting down.\"\n"
    )
    assert time.monotonic() - start >= 29


@needs_bwrap
def test_nothing_stops_two_boots_of_one_disk_but_they_are_logged(here: Path) -> None:
    (here / "s.sh").write_text("sleep 2; poweroff\n")
    args = ["--no-default-mounts", "--network", "vznat", "--script", "s.sh", "d.raw"]
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(here),
        "TMPDIR": str(here),
        "VIBE_STANDIN_STATE": str(here / "state"),
    }
    procs = [
        subprocess.Popen([str(STANDIN), *args], cwd=here, env=env, stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    overlaps = (here / "state" / "overlaps.jsonl").read_text().splitlines()
    assert len(overlaps) == 1
