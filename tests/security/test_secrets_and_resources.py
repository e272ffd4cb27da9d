"""Secrets stay out of argv, logs, warnings and files left behind; a run's resources are bounded."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.runs import runs_dir

from .conftest import CLI, Project, processes_with

SECRET = "sk-test-4f1c9e0a7b2d-SECRET"


def _grep_tree(folder: Path, needle: bytes) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(dirpath, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
                    continue  # links, FIFOs (a read would block) and huge files
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def test_secrets_never_reach_argv_logs_or_files(project: Project) -> None:
    inp = {
        "prompt": "hi",
        "groupFolder": "dev",
        "chatJid": "x@g.us",
        "isMain": False,
        "secrets": {"ANTHROPIC_API_KEY": SECRET},
    }
    project.config("dev", {"env": [f"EXTRA_TOKEN={SECRET}-env"]})
    proc = subprocess.Popen(
        [
            *CLI,
            "--root",
            str(project.root),
            "run",
            "dev",
            "--",
            "sh",
            "-c",
            "sleep 4; echo $EXTRA_TOKEN | wc -c",
        ],
        env=project.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.5)
    leaks = processes_with(SECRET)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert leaks == [], leaks
    ask = project.cli("run", "dev", stdin=json.dumps(inp).encode())
    assert ask.returncode == 0, ask.stderr
    assert SECRET.encode() not in ask.stdout + ask.stderr
    # The user's own config.json holds the configured value; nothing else may.
    config = project.root / "groups/dev/config.json"
    for folder in (project.root, project.home):
        assert [p for p in _grep_tree(folder, SECRET.encode()) if p != str(config)] == []


def test_an_echoed_secret_in_a_broken_block_is_redacted_in_warnings(project: Project) -> None:
    script = (
        "m=NANOCLAW_OUTPUT; i=$(cat); "
        'printf "%s\\n" "---${m}_START---" "{not json $i" "---${m}_END---"'
    )
    project.config("dev", {"agentCommand": ["sh", "-c", script]})
    inp = {
        "prompt": "p",
        "groupFolder": "dev",
        "chatJid": "x",
        "isMain": False,
        "secrets": {"K": SECRET},
    }
    result = project.cli("run", "dev", stdin=json.dumps(inp).encode())
    assert b"not valid JSON" in result.stderr
    assert SECRET.encode() not in result.stderr
    logs = project.root / "groups/dev/logs"
    assert all(SECRET.encode() not in p.read_bytes() for p in logs.iterdir())


def test_a_sigkilled_run_leaves_no_secret_after_the_next_command(project: Project) -> None:
    inp = {
        "prompt": "hi",
        "groupFolder": "dev",
        "chatJid": "x",
        "isMain": False,
        "secrets": {"K": SECRET},
    }
    project.config(
        "dev",
        {
            "agentCommand": [
                "sh",
                "-c",
                "cat >/dev/null; echo started > /workspace/group/s; sleep 60",
            ]
        },
    )
    proc = subprocess.Popen(
        [*CLI, "--root", str(project.root), "run", "dev"],
        env=project.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(inp).encode())
    proc.stdin.close()
    deadline = time.monotonic() + 90
    while not (project.root / "groups/dev/s").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    project.cli("stats", check=0)
    places = [Path("/dev/shm"), runs_dir(), project.root, project.home]
    for place in places:
        if place.is_dir():
            assert _grep_tree(place, SECRET.encode()) == [], place


def test_output_kept_in_memory_is_bounded(project: Project) -> None:
    block = (
        "m=NANOCLAW_OUTPUT; b=$(head -c 5000000 /dev/zero | tr '\\0' a); i=0; "
        "while [ $i -lt 20 ]; do "
        'printf "%s\\n{\\"status\\":\\"success\\",\\"result\\":\\"%s\\"}\\n%s\\n" '
        '"---${m}_START---" "$b" "---${m}_END---"; i=$((i+1)); done'
    )
    project.config("dev", {"agentCommand": ["sh", "-c", "cat >/dev/null; " + block]})
    inp = {"prompt": "p", "groupFolder": "dev", "chatJid": "x", "isMain": False}
    proc = subprocess.Popen(
        [*CLI, "--root", str(project.root), "run", "dev"],
        env=project.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(json.dumps(inp).encode())
    proc.stdin.close()
    peak_kb = 0
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        peak_kb = max(peak_kb, _high_water_kb(proc.pid))
        time.sleep(0.05)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err[-2000:]
    # Kept blocks never freed would put the peak above the 100 MB written (about 50 MB is usual).
    assert 0 < peak_kb < 80 * 1024, f"the CLI grew to {peak_kb // 1024} MB for 100 MB of output"


def _high_water_kb(pid: int) -> int:
    """The peak resident memory of one process (VmHWM), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def test_process_and_memory_limits_hold(project: Project) -> None:
    if project.sandbox != "bubblewrap" or os.geteuid() != 0:
        pytest.skip(
            "host-process limits are enforced with cgroups as root; a VM is bounded by its size"
        )
    project.config("dev", {"pids": 64, "ram": 256})
    fork = project.sh(
        "dev", "i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done 2>&1; wait; echo done"
    )
    assert b"Resource temporarily unavailable" in fork.stdout + fork.stderr or fork.returncode != 0
    mem = project.sh("dev", "python3 -c 'b = bytearray(1 << 30); print(len(b))'")
    assert mem.returncode != 0 and b"1073741824" not in mem.stdout
