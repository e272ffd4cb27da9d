"""The tart stand-in behaves like the real tool where the runtime depends on it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from tart_harness import STANDIN, local_vms, tart, wait_for

BASE = "ghcr.io/cirruslabs/macos-sequoia-base:latest"


def start(name: str, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(STANDIN), "run", name, "--no-graphics", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clone", BASE], "Missing expected argument '<new-name>'"),
        (["clone", BASE, "x", "--bogus"], "Unknown option '--bogus'"),
        (["clone", BASE, "x", "y"], "Unexpected argument 'y'"),
        (["clone", BASE, "a/b"], "<new-name> should be a local name"),
        (["set", "vm", "--cpu", "four"], "The value 'four' is invalid for '--cpu <cpu>'"),
        (["set", "vm", "--memory"], "Missing value for '--memory <memory>'"),
        (["stop"], "Missing expected argument '<name>'"),
        (["exec", "vm"], "Missing expected argument '<command> ...'"),
        (["list", "--format", "yaml"], "The value 'yaml' is invalid"),
        (["frobnicate"], "Unexpected argument 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_64_with_usage(state, argv, message):
    out = tart(*argv)
    assert out.returncode == 64
    assert f"Error: {message}" in out.stderr
    assert "Usage" in out.stderr or "USAGE" in out.stderr


def test_missing_vm_and_state_errors_exit_2(state):
    for argv in (
        ["set", "nope", "--cpu", "4"],
        ["run", "nope"],
        ["stop", "nope"],
        ["delete", "nope"],
        ["exec", "nope", "true"],
    ):
        out = tart(*argv)
        assert out.returncode == 2, argv
        assert 'the specified VM "nope" does not exist' in out.stderr
    assert tart("clone", BASE, "vm").returncode == 0
    assert tart("stop", "vm").returncode == 2
    assert tart("exec", "vm", "true").stderr.strip() == 'VM "vm" is not running'
    run = start("vm")
    try:
        wait_for(lambda: local_vms()[0]["Running"])
        again = tart("run", "vm")
        assert again.returncode == 2 and "is already running" in again.stderr
        refused = tart("delete", "vm")
        assert refused.returncode == 1 and 'VM "vm" is running' in refused.stderr
    finally:
        assert tart("stop", "vm").returncode == 0
        run.wait(timeout=30)
    assert tart("delete", "vm").returncode == 0
    assert local_vms() == []


def test_exec_waits_for_boot_then_runs_for_real(state, monkeypatch):
    monkeypatch.setenv("TART_STANDIN_BOOT_S", "1.0")
    assert tart("clone", BASE, "vm").returncode == 0
    run = start("vm")
    try:
        wait_for(lambda: local_vms()[0]["Running"])
        early = tart("exec", "vm", "true")
        assert early.returncode == 1 and "Tart Guest Agent" in early.stderr
        time.sleep(1.1)
        out = subprocess.run(
            [str(STANDIN), "exec", "vm", "sh", "-c", "cat; echo out; echo err >&2; exit 7"],
            input=b"ignored",
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert (out.returncode, out.stdout, out.stderr) == (7, b"out\n", b"err\n")
        out = subprocess.run(
            [str(STANDIN), "exec", "-i", "vm", "cat"],
            input=b"fed",
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert (out.returncode, out.stdout) == (0, b"fed")
    finally:
        tart("stop", "vm")
        run.wait(timeout=30)


def test_third_run_exceeds_the_system_limit(state):
    for name in ("a", "b", "c"):
        assert tart("clone", BASE, name).returncode == 0
    runs = [start("a"), start("b")]
    try:
        wait_for(lambda: sum(vm["Running"] for vm in local_vms()) == 2)
        third = start("c")
        third.wait(timeout=30)
        output = third.stdout.read().decode()
        assert third.returncode == 1
        assert "The number of VMs exceeds the system limit (other running VMs: a, b)" in output
    finally:
        for name in ("a", "b"):
            tart("stop", name)
        for run in runs:
            run.wait(timeout=30)


def test_list_json_fields_and_dir_parsing(state, tmp_path):
    assert tart("clone", BASE, "vm").returncode == 0
    rows = json.loads(tart("list", "--format", "json").stdout)
    assert {tuple(sorted(r)) for r in rows} == {
        ("Accessed", "Disk", "Name", "Running", "Size", "Source", "State")
    }
    assert {(r["Source"], r["Name"]) for r in rows} == {("local", "vm"), ("OCI", BASE)}
    two = start("vm", "--dir", str(tmp_path), "--dir", str(tmp_path))
    two.wait(timeout=30)
    assert two.returncode == 1 and b"prefix them with names" in two.stdout.read()
