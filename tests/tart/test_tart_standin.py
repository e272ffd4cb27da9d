"""The tart stand-in behaves like the real tool (from its source) where the runtime relies on it."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import BASE, OCI_BASE, STANDIN, TartLab, wait_for


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clone", OCI_BASE], "Missing expected argument '<new-name>'"),
        (["clone", OCI_BASE, "x", "--bogus"], "Unknown option '--bogus'"),
        (["clone", OCI_BASE, "x", "y"], "Unexpected argument 'y'"),
        (["clone", OCI_BASE, "a/b"], "<new-name> should be a local name"),
        (["set", BASE, "--cpu", "four"], "The value 'four' is invalid for '--cpu <cpu>'"),
        (["set", BASE, "--cpu", "70000"], "The value '70000' is invalid for '--cpu <cpu>'"),
        (["exec", BASE], "Missing expected argument '<command> ...'"),
        (["list", "--source", "remote"], "'remote' is not a valid <source>"),
        (
            ["run", BASE, "--graphics", "--no-graphics"],
            "--graphics and --no-graphics are mutually exclusive",
        ),
        (["frobnicate"], "Unexpected argument 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_64_with_usage(lab: TartLab, argv: list[str], message: str) -> None:
    out = lab.tart(*argv)
    assert out.returncode == 64, out
    assert f"Error: {message}" in out.stderr
    assert "Usage" in out.stderr or "USAGE" in out.stderr


def test_exit_codes_by_error_type(lab: TartLab) -> None:
    for argv in (["set", "nope", "--cpu", "4"], ["stop", "nope"], ["exec", "nope", "true"]):
        out = lab.tart(*argv)
        assert (
            out.returncode == 2 and out.stderr.strip() == 'the specified VM "nope" does not exist'
        )
    run = lab.tart("run", "nope")
    assert run.returncode == 1  # validate() wraps it
    assert run.stderr.strip() == 'Error: the specified VM "nope" does not exist'
    assert lab.tart("stop", BASE).returncode == 2  # stopped
    assert lab.tart("exec", BASE, "true").returncode == 2  # not running
    low = lab.tart("set", BASE, "--cpu", "2")
    assert low.returncode == 1 and "LessThanMinimalResourcesError" in low.stderr
    proc = lab.start_vm(BASE)
    try:
        deleted = lab.tart("delete", BASE)
        assert deleted.returncode == 1 and deleted.stderr.strip() == f'VM "{BASE}" is running'
        again = lab.tart("run", BASE, "--no-graphics")
        assert again.returncode == 2 and "is already running!" in again.stderr
    finally:
        assert lab.tart("stop", BASE).returncode == 0
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_clone_replaces_an_existing_vm_silently(lab: TartLab) -> None:
    lab.tart("clone", BASE, "mine", check=True)
    precious = lab.home / "vms" / "mine" / "disk" / "Users" / "admin" / "precious"
    precious.write_text("x")
    out = lab.tart("clone", BASE, "mine")
    assert out.returncode == 0 and out.stderr == ""
    assert not precious.exists()


def test_list_json_fields_and_oci_cache(lab: TartLab) -> None:
    rows = json.loads(lab.tart("list", "--format", "json").stdout)
    assert list(rows[0]) == [
        "Source", "Name", "Disk", "Size", "Accessed", "Running", "State"
    ]  # fmt: skip
    assert {(r["Source"], r["Name"]) for r in rows} == {("local", BASE), ("OCI", OCI_BASE)}
    local = json.loads(lab.tart("list", "--source", "local", "--format", "json").stdout)
    assert [r["Name"] for r in local] == [BASE] and local[0]["State"] == "stopped"


def test_exec_runs_argv_verbatim_in_the_guest(lab: TartLab, tmp_path) -> None:
    shared = tmp_path / "shared"
    ro = tmp_path / "ro"
    shared.mkdir()
    ro.mkdir()
    proc = subprocess.Popen(
        [str(STANDIN), "run", BASE, "--no-graphics", "--dir", f"w:{shared}", "--dir", f"r:{ro}:ro"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(lambda: lab.tart("exec", BASE, "true").returncode == 0, 10)
        early = lab.tart("exec", BASE, "sh", "-c", 'echo "$0|$1"', "a b", "$HOME")
        assert early.stdout == "a b|$HOME\n"  # no shell of tart's: arguments verbatim
        assert lab.tart("exec", BASE, "--", "ls").returncode == 1  # runs a program called --
        assert lab.tart("exec", "-i", BASE, "cat", input="piped").stdout == "piped"
        assert lab.tart("exec", BASE, "cat", input="ignored").stdout == ""  # no -i: no stdin
        assert lab.tart("exec", BASE, "sh", "-c", "exit 7").returncode == 7
        assert lab.tart("exec", BASE, "sh", "-c", "kill -9 $$").returncode == 255
        missing = lab.tart("exec", BASE, "no-such-program")
        assert missing.returncode == 1 and "executable file not found" in missing.stderr
        assert lab.tart("exec", "-t", BASE, "true").returncode != 0  # stdout not a terminal
        view = lab.tart("exec", BASE, "sh", "-c", "pwd; id -un 2>/dev/null || true; env | sort")
        lines = view.stdout.splitlines()
        assert lines[0] == "/Users/admin"
        assert "PATH=/bin:/usr/bin:/usr/sbin:/usr/local/bin:/opt/homebrew/bin" in lines
        assert not [x for x in lines if x.startswith(("TART_", "PYTHON"))], lines
        write = lab.tart(
            "exec", BASE, "sh", "-c",
            'echo hi > "/Volumes/My Shared Files/w/f" && echo no > "/Volumes/My Shared Files/r/f"',
        )  # fmt: skip
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        assert (shared / "f").read_text() == "hi\n" and not (ro / "f").exists()
        host = lab.tart("exec", BASE, "ls", str(lab.root))
        assert host.returncode != 0  # the host's folders are not in the guest
    finally:
        lab.tart("stop", BASE)
        out, _ = proc.communicate(timeout=30)
    assert out == b"Stopping VM...\n"


def test_unnamed_shares_of_one_tag_are_refused_and_the_limit_is_two(lab: TartLab, tmp_path) -> None:
    two = lab.tart("run", BASE, "--dir", str(tmp_path), "--dir", str(lab.home))
    assert two.returncode == 64
    assert "for multiple directory shares each one of them should be named" in two.stderr
    procs = []
    for name in ("v1", "v2"):
        lab.tart("clone", BASE, name, check=True)
        lab.foreign.add(name)
        procs.append(lab.start_vm(name))
    try:
        third = lab.tart("run", BASE, "--no-graphics")
        assert third.returncode == 1
        assert third.stderr.startswith("The number of VMs exceeds the system limit (other running")
    finally:
        for name, proc in zip(("v1", "v2"), procs, strict=True):
            lab.tart("stop", name)
            proc.wait(timeout=30)
