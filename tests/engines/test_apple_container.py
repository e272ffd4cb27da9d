"""Apple's `container`: the stand-in reproduces the tool's behaviour and refusals per release,
and the engine drives each release with the flags it has."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from nanoclaw_runtime_container.engines import image

from .helpers import (
    AGENT_IMAGE,
    BUSYBOX,
    AppleStandin,
    EngineProject,
    our_errors,
    text,
    wait_for,
)

# --------------------------------------------------------------------------- the stand-in


def test_names_follow_each_releases_rule(apple: AppleStandin) -> None:
    long_name = "a" * 64
    apple.set_version("1.1.0")
    ok = apple.run("run", "--rm", f"--name={long_name}", BUSYBOX, "true")
    assert ok.returncode == 0, ok.stderr  # no length limit before 1.2.0
    bad = apple.run("run", "--rm", "--name=-bad", BUSYBOX, "true")
    assert (bad.returncode, bad.stderr.strip()) == (1, "Error: invalid entity name -bad")
    apple.set_version("1.2.0")
    refused = apple.run("run", "--rm", f"--name={long_name}", BUSYBOX, "true")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"Error: container ID {long_name} is not a valid container ID"
    one = apple.run("run", "--rm", "--name=a", BUSYBOX, "true")
    assert one.returncode == 1  # the pattern needs two characters
    apple.set_version("0.9.0")
    coded = apple.run("run", "--rm", "--name=-bad", BUSYBOX, "true")
    assert coded.stderr.strip() == 'Error: invalidArgument: "invalid entity name -bad"'


def test_options_end_at_the_image(apple: AppleStandin) -> None:
    """Everything after IMAGE goes to the container, `--rm` included."""
    done = apple.run("run", BUSYBOX, "echo", "--rm", "--name=x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "--rm --name=x\n"
    assert [r["status"] for r in apple.records()] == ["stopped"]  # no --rm before IMAGE


def test_usage_errors_exit_64_and_tool_errors_1(apple: AppleStandin) -> None:
    unknown = apple.run("run", "--bogus", BUSYBOX)
    assert unknown.returncode == 64 and unknown.stderr.startswith("Error: Unknown option '--bogus'")
    cpus = apple.run("run", "-c", "1.5", BUSYBOX)
    assert cpus.returncode == 64 and "The value '1.5' is invalid for '-c <cpus>'" in cpus.stderr
    image_missing = apple.run("run", "--rm", "no-such:1", "true")
    assert image_missing.returncode == 1 and "image not found: no-such:1" in image_missing.stderr
    status = apple.run("run", "--rm", BUSYBOX, "sh", "-c", "exit 42")
    assert status.returncode == 42


def test_memory_is_parsed_as_the_tool_does(apple: AppleStandin) -> None:
    apple.set_version("1.2.2")
    bare = apple.run("run", "--rm", "-m", "2048", BUSYBOX, "true")
    assert bare.returncode == 1  # a bare number is bytes: 0 MiB
    assert "minimum memory amount allowed is 200 MiB (got 0 bytes)" in bare.stderr
    assert apple.run("run", "--rm", "-m", "2048M", BUSYBOX, "true").returncode == 0
    assert apple.run("run", "--rm", "-m", "2GiB", BUSYBOX, "true").returncode == 0
    bad = apple.run("run", "--rm", "-m", "2x", BUSYBOX, "true")
    assert (bad.returncode, bad.stderr.splitlines()[-1]) == (1, "Error: invalid symbol: x")
    apple.set_version("0.9.0")
    assert apple.run("run", "--rm", "-m", "100M", BUSYBOX, "true").returncode == 0  # no floor


def test_read_only_mounts_are_enforced(apple: AppleStandin, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    spec = f"type=bind,source={shared},target=/data,readonly"
    done = apple.run("run", "--rm", "--mount", spec, BUSYBOX, "sh", "-c", "touch /data/x")
    assert done.returncode != 0 and not (shared / "x").exists()
    rw = apple.run(
        "run",
        "--rm",
        "--mount",
        f"type=bind,source={shared},target=/data",
        BUSYBOX,
        "sh",
        "-c",
        "touch /data/y",
    )
    assert rw.returncode == 0 and (shared / "y").exists()
    comma = apple.run("run", "--rm", "--mount", f"type=bind,source={shared},target=/a=b", BUSYBOX)
    assert comma.returncode == 1 and "invalid directive format missing value" in comma.stderr
    file_mount = apple.run(
        "run", "--rm", "--mount", f"type=bind,source={shared}/y,target=/f", BUSYBOX
    )
    assert file_mount.returncode == 1 and "is not a directory" in file_mount.stderr


def test_progress_and_network_depend_on_the_release(apple: AppleStandin) -> None:
    apple.set_version("1.2.2")
    chatty = apple.run("run", "--rm", BUSYBOX, "true")
    assert "Fetching image" in chatty.stderr  # auto = plain lines when stderr is not a terminal
    quiet = apple.run("run", "--rm", "--progress=none", BUSYBOX, "true")
    assert quiet.stderr == ""
    apple.set_version("0.6.0")
    assert apple.run("run", "--rm", "--progress=none", BUSYBOX, "true").returncode == 64
    assert apple.run("run", "--rm", "--disable-progress-updates", BUSYBOX, "true").returncode == 0
    none = apple.run("run", "--rm", "--network=none", BUSYBOX, "cat", "/proc/net/dev")
    devices = [ln.split(":")[0].strip() for ln in none.stdout.splitlines() if ":" in ln]
    assert devices == ["lo"], none.stderr
    apple.set_version("0.5.0")
    old = apple.run("run", "--rm", "--network=none", BUSYBOX, "true")
    assert old.returncode == 1 and "network none not found" in old.stderr
    apple.set_version("0.9.0")
    assert apple.run("run", "--rm", "--init", BUSYBOX, "true").returncode == 64


def test_ls_json_has_each_releases_shape(apple: AppleStandin) -> None:
    apple.run("run", "--name=kept", BUSYBOX, "true")
    apple.set_version("0.12.0")
    old = json.loads(apple.run("ls", "-a", "--format", "json").stdout)
    assert old[0]["status"] == "stopped" and old[0]["configuration"]["id"] == "kept"
    apple.set_version("1.0.0")
    new = json.loads(apple.run("ls", "-a", "--format", "json").stdout)
    assert new[0]["id"] == "kept" and new[0]["status"]["state"] == "stopped"
    assert list(new[0]) == sorted(new[0])
    assert json.loads(apple.run("ls", "--format", "json").stdout) == []  # -a respected
    apple.set_version("0.9.0")
    assert len(json.loads(apple.run("ls", "--format", "json").stdout)) == 1  # -a ignored


def test_service_down(apple: AppleStandin) -> None:
    apple.set_down()
    status = apple.run("system", "status")
    assert status.returncode == 1
    assert status.stdout.strip() == "apiserver is not running and not registered with launchd"
    ls = apple.run("ls")
    assert ls.returncode == 1 and "XPC connection error: Connection invalid" in ls.stderr
    assert "container system start" in ls.stderr
    start = apple.run("system", "start", stdin="")
    assert start.returncode == 1 and "failed to read user input" in start.stderr
    assert apple.run("system", "start", "--enable-kernel-install").returncode == 0
    assert apple.run("system", "status").returncode == 0


def test_stop_without_init_waits_the_grace(apple: AppleStandin) -> None:
    """The command is PID 1 without --init: SIGTERM is ignored, `stop --time 1` kills."""
    proc = apple.run_background("run", "--rm", "--name=pid1", BUSYBOX, "sleep", "60")
    try:
        assert wait_for(lambda: [r for r in apple.records() if r["status"] == "running"], 20)
        start = time.monotonic()
        assert apple.run("stop", "--time=1", "pid1").stdout.strip() == "pid1"
        took = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert 0.9 < took < 5


# --------------------------------------------------------------------------- the engine


@pytest.fixture
def agent(apple: AppleStandin, apple_project: EngineProject) -> EngineProject:
    """The sample image built on the stand-in with `prepare --base container`."""
    apple_project.env["CONTAINER_IMAGE"] = AGENT_IMAGE
    done = apple_project.cli("prepare", "--base", "container")
    assert done.returncode == 0, text(done.stderr)
    assert text(done.stdout).strip() == f"built image {AGENT_IMAGE} with container"
    again = apple_project.cli("prepare", "--base", "container")
    assert text(again.stdout).strip() == f"image {AGENT_IMAGE} is up to date (container)"
    return apple_project


@pytest.mark.parametrize("version", ["0.6.0", "0.9.0", "1.1.0", "1.2.2"])
def test_each_release_gets_the_flags_it_has(
    apple: AppleStandin, agent: EngineProject, version: str
) -> None:
    apple.set_version(version)
    done = agent.ask("dev", "hi")
    assert done.returncode == 0, text(done.stderr)
    assert "You said: 'hi'" in text(done.stdout)
    assert "Fetching image" not in text(done.stderr)
    argv = apple.runs()[-1]
    major, minor, _ = (int(p) for p in version.split("."))
    assert ("--progress=none" in argv) == ((major, minor) >= (0, 7))
    assert ("--disable-progress-updates" in argv) == ((major, minor) < (0, 7))
    assert ("--init" in argv) == ((major, minor) >= (0, 10))
    assert "--network=none" in argv and "--memory=2048M" in argv
    assert argv.index(AGENT_IMAGE) == len(argv) - 1  # every option before IMAGE
    if (major, minor) < (0, 10):
        assert "processes limit is not enforced" in text(done.stderr)


def test_a_release_older_than_0_6_is_refused(apple: AppleStandin, agent: EngineProject) -> None:
    apple.set_version("0.5.0")
    done = agent.run("dev", "true")
    assert done.returncode == 1 and "older than 0.6.0" in text(done.stderr)


def test_names_are_valid_whatever_the_group(
    apple: AppleStandin, apple_project: EngineProject
) -> None:
    folder = "Team_" + "x" * 58  # a 63-character folder
    apple_project.helper.group(folder)
    done = apple_project.run(folder, "true")
    assert done.returncode == 0, text(done.stderr)
    name = next(a for a in apple.runs()[-1] if a.startswith("--name=")).split("=", 1)[1]
    assert len(name) <= 63


def test_env_goes_through_an_env_file(apple: AppleStandin, apple_project: EngineProject) -> None:
    secret = "tok-" + os.urandom(5).hex()
    apple_project.config("dev", env=[f"TOKEN={secret}"])
    done = apple_project.run("dev", "sh", "-c", 'echo "$TOKEN $HOME"')
    assert text(done.stdout).strip() == f"{secret} /home/node"
    assert all(secret not in " ".join(c) for c in apple.calls())
    assert any(a.startswith("--env-file=/dev/fd/") for a in apple.runs()[-1])


def test_masks_and_modes(apple: AppleStandin, apple_project: EngineProject) -> None:
    (apple_project.root / ".env").write_text("KEY=secret\n")
    apple_project.config("main")
    done = apple_project.run(
        "main",
        "sh",
        "-c",
        "cat /workspace/project/.env; echo END; echo x > /workspace/project/.env || echo RO;"
        " echo x > /workspace/group/config.json || echo CONFIG-RO",
    )
    assert text(done.stdout).split() == ["END", "RO", "CONFIG-RO"], text(done.stderr)


def test_timeout_stops_fast_with_init(apple: AppleStandin, apple_project: EngineProject) -> None:
    start = time.monotonic()
    done = apple_project.run("dev", "sleep", "300", timeout_ms=1500)
    assert done.returncode == 124
    assert time.monotonic() - start < 8
    assert wait_for(lambda: not apple.records(), 10)


def test_sigkill_leftover_then_reset(apple: AppleStandin, apple_project: EngineProject) -> None:
    proc = apple_project.start("run", "dev", "--", "sleep", "300")
    try:
        assert wait_for(lambda: [r for r in apple.records() if r["status"] == "running"], 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.communicate(timeout=10)
    rows = json.loads(apple_project.cli("stats", "--json").stdout)
    assert [r["group"] for r in rows if r["kind"] == "leftover"] == ["dev"]
    reset = apple_project.cli("reset", "dev", "--yes")
    assert "removed container" in text(reset.stdout), text(reset.stderr)
    assert apple.records() == []


def test_service_down_is_explained(apple: AppleStandin, apple_project: EngineProject) -> None:
    apple.set_down()
    done = apple_project.run("dev", "true")
    assert done.returncode == 1
    ours = our_errors(done.stderr)
    assert ours == [
        "nanoclaw-runtimes: Apple's container service is not running; start its service: "
        "`container system start --enable-kernel-install` (once per login)"
    ]
    doctor = json.loads(apple_project.cli("plugins", "--json").stdout)
    row = next(r for r in doctor if r["name"] == "container")
    assert row["available"] is False and "system start" in row["fix"]


def test_too_little_memory_is_refused_before_the_tool(
    apple: AppleStandin, apple_project: EngineProject
) -> None:
    apple_project.config("dev", ram=128)
    done = apple_project.run("dev", "true")
    assert done.returncode != 0 and "CONTAINER_MEMORY" in text(done.stderr)
    assert apple.runs() == []


def test_the_image_fingerprint_is_a_label(apple: AppleStandin, agent: EngineProject) -> None:
    shown = json.loads(apple.run("image", "inspect", AGENT_IMAGE).stdout)
    labels = shown[0]["variants"][0]["config"]["config"]["Labels"]
    assert labels[image.CONTEXT_LABEL] == image.fingerprint(image.context_files())
