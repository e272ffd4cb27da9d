"""NanoClaw v1.2.0 and v1.2.53 running agents through ``nanoclaw-runtimes-docker``.

Each case runs a NanoClaw host (tests/nanoclaw/nanoclaw_host.py: its argv, stdin, stdout
parser, timeouts and ``stop``, as container-runner.ts has them) against the adapter linked
as ``docker`` on its PATH, with the agent-runner stand-in (agent_runner.sh) in the sandbox,
on the container runtime (bubblewrap) and on vibe (QEMU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import on_qemu_too, processes_mentioning
from .nanoclaw_host import OUTPUT_END, OUTPUT_START, VERSIONS, Mount, NanoClawHost, OneCli

WAIT_S = 240.0
"""The longest any one run may take here (a VM on TCG boots in a few seconds)."""
NAME = re.compile(r"nanoclaw-[A-Za-z0-9-]+-\d{13}")

versions = pytest.mark.parametrize("version", VERSIONS)


def matrix(*on_vibe: str) -> pytest.MarkDecorator:
    """Both NanoClaw versions on bubblewrap, and the versions named on vibe (QEMU: a VM boots
    for the case, slow under TCG, so only where the transport matters)."""
    params = [pytest.param("container", v, id=f"container-{v}") for v in VERSIONS]
    params += [pytest.param("vibe", v, id=f"vibe-{v}", marks=pytest.mark.slow) for v in on_vibe]
    return pytest.mark.parametrize(("runtime", "version"), params, indirect=["runtime"])


def results(outcome: Any) -> list[str]:
    return [o["result"] for o in outcome.outputs if o.get("result") is not None]


def nothing_left(root: Path) -> None:
    """No process of the case's project is left (a warm VM powers off 2 s after its run)."""
    wait_until(lambda: not processes_mentioning(str(root)), 30, "the end of every sandbox")


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def fast_idle(host: NanoClawHost, idle_ms: int = 1500) -> NanoClawHost:
    """The host's idle timer (``_close`` after the last result) short (times the runtime's
    pace), its hard timeout long."""
    host.idle_timeout_ms = int(idle_ms * host.pace)
    host.grace_floor_ms = 600_000
    return host


def short_timeouts(
    host: NanoClawHost, folder: str, config_ms: int, idle_ms: int, floor_ms: int
) -> int:
    """NanoClaw's timeouts for a timeout case: the floor (its 30 s) times the runtime's pace.
    On a runtime that keeps its sandbox warm (vibe) a first run boots it, so the timed run's
    first block does not wait for a boot on a busy host. Returns how many runs came first."""
    warmed = 0
    if host.pace > 1:
        fast_idle(host, 300)
        warm, _ = host.process_messages(folder, "results 1", wait_s=WAIT_S)
        assert warm.code == 0, warm.error
        warmed = 1
    host.container_timeout_ms = config_ms
    host.idle_timeout_ms = idle_ms
    host.grace_floor_ms = int(floor_ms * host.pace)
    return warmed


# --------------------------------------------------------------------------- message runs


@matrix("1.2.53")
def test_blocks_stream_and_the_run_ends_on_close(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "whatsapp_family-chat"
    project.group(folder)
    host = fast_idle(make_host(version))
    outcome, sent = host.process_messages(folder, "results 3 pause 0.4", wait_s=WAIT_S)

    assert outcome.status == "success", outcome.error
    assert outcome.code == 0
    assert outcome.args[:4] == ["run", "-i", "--rm", "--name"]
    assert NAME.fullmatch(outcome.name) and outcome.name.startswith(
        "nanoclaw-whatsapp-family-chat-"
    )
    assert [t.split(":")[0] for t in sent] == [
        f"group={folder} query=1 block={i}/3" for i in (1, 2, 3)
    ]
    assert outcome.outputs[-1] == {
        "status": "success",
        "result": None,
        "newSessionId": f"session-{folder}",
    }
    assert len(outcome.outputs) == 4 and outcome.parse_failures == 0
    assert outcome.new_session_id == f"session-{folder}"
    # Streamed: the first block came while the agent was still pausing between blocks.
    assert outcome.first_output_s is not None
    assert outcome.first_output_s < outcome.duration_ms / 1000 - 0.7
    # One log each, never the same file: NanoClaw's container-*.log and the core's runtimes-*.log.
    assert [p.name for p in project.logs(folder, "container")] == [outcome.log_file.name]
    ours = project.logs(folder, "runtimes")
    assert len(ours) == 1
    text = ours[0].read_text()
    assert text.startswith("=== Container Run Log ===\n") and "Exit Code: 0" in text
    assert f"Runtime: {runtime}" in text
    if version == "1.2.53":
        assert "--add-host=host.docker.internal:host-gateway" in outcome.args
    else:
        assert not any(a.startswith("--add-host") for a in outcome.args)


@matrix("1.2.0")
def test_follow_up_messages_through_ipc(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """One message piped into the running query, one starting the next query; then _close."""
    folder = "telegram_team"
    project.group(folder)
    host = fast_idle(make_host(version), idle_ms=4000)
    outcome, sent = host.process_messages(
        folder,
        "results 1 linger 3",
        # after the first result (the query lingers), then after query 1's session block
        follow_ups=[(1, "while you think"), (3, "next question results 2")],
        wait_s=WAIT_S,
    )
    assert outcome.status == "success", outcome.error
    assert outcome.code == 0
    assert sent[0].startswith(f"group={folder} query=1 block=1/1")
    assert "piped: while you think" in sent
    assert [s.split(":")[0] for s in sent if "query=2" in s] == [
        f"group={folder} query=2 block=1/2",
        f"group={folder} query=2 block=2/2",
    ]
    nulls = [o for o in outcome.outputs if o.get("result") is None]
    assert len(nulls) == 2  # a session block after each query
    assert not list((project.root / "data" / "ipc" / folder / "input").iterdir())


@versions
def test_close_during_a_query_ends_without_the_session_block(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    host = fast_idle(make_host(version), idle_ms=300)
    pause = 5 * host.pace
    outcome, sent = host.process_messages(folder, f"results 3 pause {pause:g}", wait_s=WAIT_S)
    assert outcome.status == "success", outcome.error
    assert outcome.code == 0
    assert len(sent) == 1 and len(outcome.outputs) == 1
    assert "Close sentinel consumed during query, exiting" in outcome.stderr


@versions
def test_error_block_and_status(version: str, runtime: str, project: Any, make_host: Any) -> None:
    folder = "dev"
    project.group(folder)
    host = fast_idle(make_host(version))
    outcome, _ = host.process_messages(folder, "results 1 fail", wait_s=WAIT_S)
    assert outcome.code == 1
    assert outcome.status == "error"
    assert outcome.outputs[-1] == {
        "status": "error",
        "result": None,
        "newSessionId": "session-dev",
        "error": "asked to fail",
    }
    assert outcome.error.startswith("Container exited with code 1: ")
    assert "[agent-runner] Agent error: asked to fail" in outcome.error
    assert "=== Container Args ===" in outcome.log_file.read_text()
    ours = project.logs(folder, "runtimes")[0].read_text()
    assert "Exit Code: 1" in ours and "Status: error" in ours
    # On error the log keeps the streams, as NanoClaw's does.
    assert f"=== Stdout ===\n{OUTPUT_START}\n" in ours
    assert "[agent-runner] Agent error: asked to fail" in ours.split("=== Stdout ===")[0]


def test_a_stream_cut_inside_a_block(project: Any, make_host: Any) -> None:
    """An agent whose output ends inside a block: NanoClaw gets the bytes as the agent wrote
    them (with docker it would see the same: no block, the agent's status), and the loss is
    said on stderr and in the core's log, never silently."""
    folder = "dev"
    project.group(folder)
    outcome, sent = fast_idle(make_host("1.2.53")).process_messages(
        folder, "results 1 cut", wait_s=WAIT_S
    )
    assert outcome.code == 0 and len(sent) == 1
    assert outcome.stdout_raw.endswith(
        f'{OUTPUT_START}\n{{"status":"success","result":"cut sho'.encode()
    )
    problem = "output ended inside a block (no ---NANOCLAW_OUTPUT_END---); block lost"
    assert f"nanoclaw-runtimes-docker: warning: {problem}\n" in outcome.stderr
    assert f"Problem: {problem}" in project.logs(folder, "runtimes")[0].read_text()


@matrix("1.2.53")
def test_exit_status_passes_through(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    outcome, _ = make_host(version).process_messages(folder, "crash 7", wait_s=WAIT_S)
    assert outcome.code == 7
    assert outcome.outputs == []
    # docker's message: the agent's status and its own stderr, no line of the adapter's
    assert outcome.error.startswith("Container exited with code 7: [agent-runner] ")
    assert outcome.error.endswith("[agent-runner] crashing with status 7\n")
    assert "nanoclaw-runtimes-docker" not in outcome.stderr


@matrix("1.2.53")
def test_stderr_passes_once_and_its_markers_are_not_blocks(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    host = fast_idle(make_host(version))
    outcome, sent = host.process_messages(folder, "noise junk results 2", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert len(sent) == 2 and not any("fake from stderr" in s for s in sent)
    for i in range(50):
        line = f"[agent-runner] [msg #{i}] type=assistant chatter line {i}"
        assert outcome.stderr_lines.count(line) == 1
    assert '{"status":"success","result":"fake from stderr"}' in outcome.stderr
    assert b"fake from stderr" not in outcome.stdout_raw
    assert outcome.stdout.startswith("compiling agent-runner... done\ntsc: 0 errors\n")


@versions
def test_stdout_byte_for_byte_across_any_chunking(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """Reads of random sizes (1 byte up): the parser still finds every block, and the bytes
    are the agent's exactly."""
    folder = "dev"
    project.group(folder)
    rng = random.Random(20260415)
    host = fast_idle(make_host(version, read_size=lambda: rng.choice([1, 2, 7, 64, 4096])), 1000)
    prompt = "junk results 4"
    outcome, _ = host.process_messages(folder, prompt, wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    blocks = [
        json.dumps(
            {
                "status": "success",
                "result": f"group=dev query=1 block={i}/4: {prompt}",
                "newSessionId": "session-dev",
            },
            separators=(",", ":"),
        )
        for i in range(1, 5)
    ]
    blocks.append('{"status":"success","result":null,"newSessionId":"session-dev"}')
    expected = "compiling agent-runner... done\ntsc: 0 errors\n" + "".join(
        f"{OUTPUT_START}\n{b}\n{OUTPUT_END}\n" for b in blocks
    )
    assert outcome.stdout_raw == expected.encode()
    assert [json.dumps(o, separators=(",", ":")) for o in outcome.outputs] == blocks


@versions
def test_multibyte_text_arrives_intact(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    outcome, sent = fast_idle(make_host(version)).process_messages(
        folder, "utf8 results 1", wait_s=WAIT_S
    )
    assert outcome.code == 0, outcome.error
    assert "héllo wörld ✓ 日本語" in sent[0]
    assert "héllo wörld ✓ 日本語".encode() in outcome.stdout_raw


@versions
def test_multi_mib_blocks_and_the_output_caps(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """A 3 MiB block parses whole; with the caps at 1500 units both log accumulators are
    truncated and flagged, and parsing is not affected."""
    folder = "dev"
    project.group(folder)
    size = 3 * 2**20
    host = fast_idle(make_host(version, max_output=1500))
    outcome, _ = host.process_messages(folder, f"noise results 1 big {size}", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    big = [o["result"] for o in outcome.outputs if o.get("result") and o["result"][0] == "x"]
    assert len(big) == 1 and big[0] == "x" * size
    assert outcome.stdout_truncated and len(outcome.stdout) == 1500
    assert outcome.stderr_truncated and len(outcome.stderr) == 1500
    assert len(outcome.stdout_raw) > size
    header = outcome.log_file.read_text().splitlines()[:8]
    assert "Stdout Truncated: true" in header and "Stderr Truncated: true" in header


@contextlib.contextmanager
def busy_cores() -> Iterator[None]:
    """Every core of this host busy (one spinning process each) while the block runs."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


FLOOD_LINE = re.compile(rf"\[agent-runner\] flood (\d{{5}}) {OUTPUT_START} tail (\d{{5}})")


def check_checksummed(outcome: Any, blocks: int, size: int) -> None:
    """Every random block whole (its sha256 as the agent computed it), every stderr flood line
    whole and on stderr only, stdout exactly the agent's blocks."""
    data = [o["result"] for o in outcome.outputs if o.get("result") and len(o["result"]) == size]
    assert len(data) == blocks, [len(o.get("result") or "") for o in outcome.outputs]
    summary = [o["result"] for o in outcome.outputs if (o.get("result") or "").startswith("sha")]
    assert len(summary) == 1, summary
    words = summary[0].split(":", 1)[1].split()
    assert words[:-1] == [hashlib.sha256(d.encode()).hexdigest() for d in data]
    lines = int(words[-1].removeprefix("stderr-lines="))
    found = FLOOD_LINE.findall(outcome.stderr)
    assert found == [(f"{i:05d}", f"{i:05d}") for i in range(lines)]
    assert outcome.stderr.count("flood") == lines
    at = outcome.stdout_raw.find(b"[agent-runner]")
    assert at < 0, outcome.stdout_raw[max(0, at - 200) : at + 200]
    assert outcome.parse_failures == 0
    expected = sum(len(d) for d in data) + len(OUTPUT_START) + len(OUTPUT_END)
    assert len(outcome.stdout_raw) > expected


@on_qemu_too
def test_large_output_is_lossless_with_every_core_busy(
    runtime: str, project: Any, make_host: Any
) -> None:
    """With every core busy: three 1 MiB blocks of random data, then one block over NanoClaw's
    10 MiB cap, while stderr is flooded with marker-bearing lines written in pieces. No byte
    lost or reordered (checksums), stderr never mixed into stdout. NanoClaw sees the big block
    whole (its parse buffer has no cap) and flags its log accumulator truncated; so does the
    core's run log, which keeps stdout at debug level."""
    folder = "dev"
    project.group(folder)
    mib = 2**20
    big = 10 * mib + mib // 2
    host = fast_idle(make_host("1.2.53", env={"LOG_LEVEL": "debug"}))
    with busy_cores():
        small, _ = host.process_messages(folder, f"results 0 rand 3 {mib}", wait_s=WAIT_S)
        large, _ = host.process_messages(folder, f"results 0 rand 1 {big}", wait_s=WAIT_S)
    assert small.code == 0, small.error
    check_checksummed(small, 3, mib)
    assert not small.stdout_truncated
    assert large.code == 0, large.error
    check_checksummed(large, 1, big)
    assert large.stdout_truncated and len(large.stdout) == host.max_output
    theirs = large.log_file.read_text()
    assert (
        "Stdout Truncated: true" in theirs.splitlines() and "=== Stdout (TRUNCATED) ===" in theirs
    )
    ours = project.logs(folder, "runtimes")
    assert len(ours) == 2
    header = ours[1].read_text(errors="replace").split("\n=== Input ===")[0].splitlines()
    assert "Stdout Truncated: true" in header and "Stderr Truncated: false" in header
    assert "=== Stdout (TRUNCATED) ===" in ours[1].read_text(errors="replace")
    assert "Stdout Truncated: false" in ours[0].read_text(errors="replace")


def test_several_groups_at_once(runtime: str, project: Any, make_host: Any) -> None:
    """NanoClaw runs up to MAX_CONCURRENT_CONTAINERS groups at once, each its own run."""
    folders = ["alpha", "beta", "gamma"]
    for folder in folders:
        project.group(folder)
    host = fast_idle(make_host("1.2.53"), idle_ms=1000)
    found: dict[str, Any] = {}

    def one(folder: str) -> None:
        found[folder] = host.process_messages(folder, "results 2 pause 0.5", wait_s=WAIT_S)

    threads = [threading.Thread(target=one, args=(f,), daemon=True) for f in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    for folder in folders:
        outcome, sent = found[folder]
        assert outcome.code == 0, outcome.error
        assert [s.split(":")[0] for s in sent] == [
            f"group={folder} query=1 block={i}/2" for i in (1, 2)
        ]
    assert len({found[f][0].name for f in folders}) == 3


OTHER_AGENT = """cat >/dev/null
printf '%s\\n{"status":"success","result":"other agent %s %s"}\\n%s\\n' \\
  ---NANOCLAW_OUTPUT_START--- "$1" "$2" ---NANOCLAW_OUTPUT_END---
"""


def container_config(group: Path, **config: Any) -> None:
    (group / "config.json").write_text(json.dumps({"containerConfig": config}))


@on_qemu_too
def test_each_group_names_its_agent(
    runtime: str, project: Any, environ: dict[str, str], pace: float
) -> None:
    """``containerConfig.agentCommand`` is a group's agent (here one string, split as a shell
    would); a group without one gets its runtime's default agent (bubblewrap: the example agent
    on python3; the minimal vibe base: its sh/awk one); a command missing in the sandbox is
    docker's 127, the reason on stderr."""
    env = {k: v for k, v in environ.items() if k != "CONTAINER_AGENT_COMMAND"}
    own = project.group("alpha")
    (own / "other.sh").write_text(OTHER_AGENT)
    container_config(own, agentCommand="/bin/sh /workspace/group/other.sh 'hello there' 2")
    plain = project.group("beta")
    host = NanoClawHost(project.root, version="1.2.53", env=env)
    host.pace = pace
    fast_idle(host, 500)

    outcome, sent = host.process_messages("alpha", "hi", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert sent == ["other agent hello there 2"]

    outcome, sent = host.process_messages("beta", "hi", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    # "Andy here (example agent). You said: 'hi'. ...", the minimal base's: "(minimal example
    # agent). You said: hi. ..."
    assert len(sent) == 1 and re.search(r"example agent\)\. You said: '?hi'?\.", sent[0]), sent
    assert outcome.outputs[-1]["result"] is None and outcome.outputs[-1]["newSessionId"]

    container_config(plain, agentCommand=["/opt/no-such-agent", "--serve"])
    outcome, sent = host.process_messages("beta", "hi", wait_s=WAIT_S)
    assert outcome.code == 127 and sent == []
    assert outcome.error.startswith("Container exited with code 127: ")
    assert "/opt/no-such-agent" in outcome.stderr
    assert re.search(r"not found|No such file", outcome.error), outcome.error


@pytest.mark.parametrize(("command", "status"), [("/nonexistent/agent", 127), ("agent.sh", 126)])
def test_an_agent_that_cannot_start(
    command: str, status: int, runtime: str, project: Any, make_host: Any
) -> None:
    """docker's 127 (no such command) and 126 (not executable)."""
    folder = "dev"
    (project.group(folder) / "agent.sh").chmod(0o644)
    command = command if command.startswith("/") else f"/workspace/group/{command}"
    host = make_host("1.2.53", env={"CONTAINER_AGENT_COMMAND": command})
    outcome, _ = host.process_messages(folder, "results 1", wait_s=WAIT_S)
    assert outcome.code == status
    assert outcome.error.startswith(f"Container exited with code {status}: ")
    assert outcome.outputs == []


# --------------------------------------------------------------------------- main, tasks, OneCLI


@matrix("1.2.53")
def test_main_group_sees_the_project_with_env_masked(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "whatsapp_main"
    project.group(folder)
    secret = "sk-ant-test-0123456789abcdef"
    (project.root / ".env").write_text(f"ANTHROPIC_API_KEY={secret}\nASSISTANT_NAME=Andy\n")
    host = fast_idle(make_host(version, env={"LOG_LEVEL": "debug"}))
    outcome, sent = host.process_messages(folder, "probe", is_main=True, wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert "-v" in outcome.args and f"{project.root}:/workspace/project:ro" in outcome.args
    assert "/dev/null:/workspace/project/.env:ro" in outcome.args
    report = sent[0]
    assert "project=ro" in report and "envfile=0bytes" in report
    assert "global=rw" in report  # main writes the shared memory (v1.2.49+, and the contract)
    if version == "1.2.53":
        assert "store=rw" in report
    ours = project.logs(folder, "runtimes")[0].read_text()
    assert "IsMain: true" in ours
    assert "=== Input ===" in ours and secret not in ours
    if version == "1.2.0":  # secrets travel in stdin; the log shows their names only
        assert '"ANTHROPIC_API_KEY": "[REDACTED]"' in ours


@versions
def test_non_main_group_sees_no_project(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    outcome, sent = fast_idle(make_host(version)).process_messages(folder, "probe", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert "project=none" in sent[0] and "store=none" in sent[0] and "global=ro" in sent[0]


@on_qemu_too
def test_scheduled_task_script_reaches_the_agent(
    runtime: str, project: Any, make_host: Any
) -> None:
    """v1.2.53's ``script`` field (unknown to the core) reaches the agent, which runs it."""
    folder = "dev"
    project.group(folder)
    host = make_host("1.2.53")
    script = 'echo "checking"\necho \'{"wakeAgent":true,"data":{"count":42}}\''
    outcome, sent = host.run_task(
        folder, "summarise", script=script, close_delay_s=1.0, wait_s=WAIT_S
    )
    assert outcome.code == 0, outcome.error
    assert len(sent) == 1
    assert 'script-data={"count":42}' in sent[0]
    assert "[SCHEDULED TASK] Instructions: summarise" in sent[0]


def test_scheduled_task_script_can_keep_the_agent_asleep(
    runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    host = make_host("1.2.53")
    outcome, sent = host.run_task(
        folder, "summarise", script="echo '{\"wakeAgent\":false}'", close_delay_s=1.0, wait_s=WAIT_S
    )
    assert outcome.code == 0, outcome.error
    assert sent == []
    assert outcome.outputs == [{"status": "success", "result": None}]


def test_onecli_variables_and_ca_files(runtime: str, project: Any, make_host: Any) -> None:
    """v1.2.53 with a OneCLI gateway: its -e variables reach the sandbox only, its CA file
    mounts (single files from the temp folder) are shown read-only."""
    folder = "dev"
    project.group(folder)
    onecli = OneCli(env={"ONECLI_PROXY": "http://host.docker.internal:10255"})
    host = fast_idle(make_host("1.2.53", onecli=onecli))
    outcome, sent = host.process_messages(folder, "env probe", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert "ONECLI_PROXY=http://host.docker.internal:10255" in outcome.args
    assert "ONECLI_PROXY=http://host.docker.internal:10255" in sent[0]
    assert "ca=yes" in sent[0] and "ssl=/tmp/onecli-combined-ca.pem" in sent[0]


@on_qemu_too
def test_sandbox_values_never_reach_a_command_line(
    runtime: str, project: Any, make_host: Any, bin_dir: Path
) -> None:
    """A ``-e`` value (OneCLI's, say) is in the sandbox's environment, and in NanoClaw's own
    ``docker run`` argv, but in no other process's command line while the run is going."""
    folder = "dev"
    project.group(folder)
    token = f"tok-{random.randrange(10**12):012d}"
    host = make_host("1.2.53", onecli=OneCli(env={"ONECLI_PROXY": f"http://u:{token}@proxy:1"}))
    seen: list[list[str]] = []

    def on_output(block: dict[str, Any]) -> None:
        if block.get("result") and not seen:
            found = processes_mentioning(token).values()
            others = [p for p in found if f"{bin_dir}/docker run" not in p]
            seen.append(others)
            host.close_stdin(folder)

    inp = {
        "prompt": "env results 1 linger 1",
        "groupFolder": folder,
        "chatJid": "x@g",
        "isMain": False,
    }
    outcome = host.run_container_agent(folder, inp, on_output, wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert token in outcome.outputs[0]["result"]  # the agent has it
    assert seen == [[]]
    assert token not in project.logs(folder, "runtimes")[0].read_text()


@on_qemu_too
def test_mounts_nanoclaw_passes_are_rechecked(
    runtime: str, project: Any, make_host: Any, environ: dict[str, str], tmp_path: Path
) -> None:
    """The mounts on NanoClaw's command line reach the sandbox once the core accepts them: the
    group's agent-runner source at /app/src, the additionalMounts its allowlist allows (ro and
    rw), OneCLI's single CA file; the ones our allowlist refuses are left out, each with one
    warning line, and the run goes on."""
    folder = "dev"
    project.group(folder)
    shared = tmp_path / "shared"
    (shared / "docs").mkdir(parents=True)
    (shared / "docs" / "readme.txt").write_text("shared docs\n")
    (shared / "work").mkdir()
    (shared / "work").chmod(0o777)  # the sandbox user writes there (root's adapter: not root)
    (shared / ".ssh").mkdir()
    (tmp_path / "elsewhere").mkdir()
    allowlist = Path(environ["NANOCLAW_MOUNT_ALLOWLIST"])
    allowlist.parent.mkdir(parents=True, exist_ok=True)
    allowlist.write_text(
        json.dumps(
            {
                "allowedRoots": [{"path": str(shared), "allowReadWrite": True}],
                "blockedPatterns": [],
                "nonMainReadOnly": False,
            }
        )
    )
    onecli = OneCli(env={"ONECLI_PROXY": "http://host.docker.internal:10255"})
    host = fast_idle(make_host("1.2.53", onecli=onecli))
    additional = [
        Mount(str(shared / "docs"), "/workspace/extra/docs", True),
        Mount(str(shared / "work"), "/workspace/extra/work", False),
        Mount(str(shared / ".ssh"), "/workspace/extra/keys", True),  # a blocked pattern
        Mount(str(tmp_path / "elsewhere"), "/workspace/extra/elsewhere", True),  # not allowed
    ]
    outcome, sent = host.process_messages(
        folder, "probe results 1", additional=additional, wait_s=WAIT_S
    )
    assert outcome.code == 0, outcome.error
    assert "extra=docs:ro,work:rw, appsrc=yes" in sent[0]
    assert "global=ro" in sent[0] and "project=none" in sent[0]
    assert "ca=yes" in sent[0] and "ssl=/tmp/onecli-combined-ca.pem" in sent[0]
    warnings = [
        line for line in outcome.stderr.splitlines() if line.startswith("nanoclaw-runtimes-docker")
    ]
    assert len(warnings) == 2, outcome.stderr
    assert "/workspace/extra/keys refused" in warnings[0]
    assert 'matches the blocked pattern ".ssh"' in warnings[0]
    assert "/workspace/extra/elsewhere refused" in warnings[1]
    assert "is not under an allowed root" in warnings[1]
    ours = project.logs(folder, "runtimes")[0].read_text()
    assert "/workspace/extra/docs (ro)" in ours and "/workspace/extra/work\n" in ours
    assert ours.count("Problem: mount -v") == 2


@versions
def test_user_flag_names_the_sandbox_user(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """NanoClaw passes ``--user UID:GID`` when it runs as neither root nor 1000; the files the
    agent writes then belong to that user (as root the adapter takes it as the sandbox user)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("as another user, --user must be the invoking user (a refusal case)")
    folder = "dev"
    project.group(folder)
    host = fast_idle(make_host(version, uid=4242, gid=4242), 1000)
    outcome, _ = host.process_messages(folder, "mark results 1", wait_s=WAIT_S)
    assert outcome.code == 0, outcome.error
    assert outcome.args[outcome.args.index("--user") + 1] == "4242:4242"
    owner = (project.root / "groups" / folder / "marker").stat()
    assert 4242 <= owner.st_uid < 4242 + 65536 and 4242 <= owner.st_gid < 4242 + 65536


# --------------------------------------------------------------------------- timeouts and stop


@matrix("1.2.53")
def test_hard_timeout_stops_the_run_after_output(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """The adapter's own idle timeout never fires first (CONTAINER_TIMEOUT=1000 would make a
    plain run stop after 1 s): NanoClaw's timer, reset by each block, calls ``stop``."""
    folder = "dev"
    project.group(folder)
    host = make_host(version, env={"CONTAINER_TIMEOUT": "1000", "IDLE_TIMEOUT": "500"})
    warmed = short_timeouts(host, folder, 1000, 500, 2500)
    outcome, sent = host.process_messages(folder, "results 1 hang", wait_s=WAIT_S)
    assert len(sent) == 1
    assert outcome.timed_out and outcome.had_streaming_output
    # NanoClaw's hard timeout after the block (3 s on bubblewrap), not the 1 s of ours
    assert outcome.duration_ms >= host.hard_timeout_ms() > 1000
    assert outcome.status == "success"  # NanoClaw's idle cleanup
    assert not outcome.sigkilled
    assert len(outcome.stop_calls) == 1 and outcome.stop_calls[0][1] == 0
    grace = 1 if version == "1.2.53" else 10
    assert outcome.stop_calls[0][2] < grace + 4
    assert outcome.code == 143
    assert outcome.log_file.read_text().startswith("=== Container Run Log (TIMEOUT) ===")
    ours = project.logs(folder, "runtimes")
    assert len(ours) == warmed + 1 and "the run was stopped" in ours[-1].read_text()
    nothing_left(project.root)


@versions
def test_timeout_without_output_is_an_error(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    folder = "dev"
    project.group(folder)
    host = make_host(version)
    warmed = short_timeouts(host, folder, 1000, 0, 2000)
    outcome, _ = host.process_messages(folder, "results 0 hang", wait_s=WAIT_S)
    assert outcome.timed_out and not outcome.had_streaming_output
    assert outcome.status == "error"
    assert outcome.error == "Container timed out after 1000ms"
    assert len(project.logs(folder, "runtimes")) == warmed + 1


@versions
def test_a_stubborn_agent_is_killed_after_the_grace(
    version: str, runtime: str, project: Any, make_host: Any
) -> None:
    """An agent that ignores SIGTERM: ``stop`` still returns once the grace ran out and the
    sandbox was killed."""
    folder = "dev"
    project.group(folder)
    host = make_host(version)
    warmed = short_timeouts(host, folder, 500, 0, 1500)
    outcome, sent = host.process_messages(folder, "results 1 hang stubborn", wait_s=WAIT_S)
    assert outcome.timed_out and len(sent) == 1
    assert outcome.stop_calls and outcome.stop_calls[0][1] == 0
    grace = 1 if version == "1.2.53" else 10  # `stop -t 1`, and docker's default
    assert outcome.stop_calls[0][2] < grace + 4
    if runtime == "container":
        # Its agent gets SIGTERM and the grace to heed it; vibe powers the VM off at once.
        assert outcome.stop_calls[0][2] >= grace
    assert not outcome.sigkilled
    assert len(project.logs(folder, "runtimes")) == warmed + 1
    nothing_left(project.root)


@matrix("1.2.53")
def test_a_failing_stop_falls_back_to_sigkill(
    version: str,
    runtime: str,
    project: Any,
    make_host: Any,
    environ: dict[str, str],
    tmp_path: Path,
) -> None:
    """When ``docker stop`` fails, NanoClaw SIGKILLs the ``run`` process: the sandbox dies
    with it and nothing is left running."""
    folder = "dev"
    project.group(folder)
    elsewhere = tmp_path / "other-runs"
    elsewhere.mkdir()
    broken = {**environ, "NANOCLAW_RUNS_DIR": str(elsewhere / "runs")}  # stop finds nothing
    host = make_host(version, sh_env=broken)
    short_timeouts(host, folder, 500, 0, 1500)
    outcome, sent = host.process_messages(folder, "results 1 hang", wait_s=WAIT_S)
    assert outcome.timed_out and len(sent) == 1
    assert outcome.stop_calls and outcome.stop_calls[0][1] == 1  # No such container
    assert outcome.sigkilled and outcome.code is None
    assert outcome.status == "success"  # it had output: idle cleanup
    nothing_left(project.root)


# --------------------------------------------------------------------------- start-up


@pytest.mark.parametrize(
    ("runtime", "variant"),
    [
        *[pytest.param("container", v, id=f"container-{v}") for v in (*VERSIONS, "apple")],
        pytest.param("vibe", "1.2.53", id="vibe-1.2.53", marks=pytest.mark.slow),
    ],
    indirect=["runtime"],
)
def test_startup_info_and_orphan_cleanup(
    variant: str, runtime: str, project: Any, make_host: Any
) -> None:
    """A NanoClaw that died left a run behind; the next one checks the runtime (``info``, or
    Apple's ``system status``), lists the orphan with ``ps`` (``ls --format json``) and stops
    it, from another process."""
    folder = "dev"
    project.group(folder)
    apple = variant == "apple"
    version = "1.2.0" if apple else variant
    first = make_host(version, apple=apple)
    done: dict[str, Any] = {}
    got_block = threading.Event()

    def run() -> None:
        done["outcome"] = first.run_container_agent(
            folder,
            {"prompt": "results 1 hang", "groupFolder": folder, "chatJid": "x@g", "isMain": False},
            lambda block: got_block.set(),
            wait_s=WAIT_S,
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert got_block.wait(WAIT_S), "no output block from the first run"

    second = make_host(version, apple=apple)
    t0 = time.monotonic()
    second.ensure_runtime_running()
    assert time.monotonic() - t0 < 10
    stopped = second.cleanup_orphans()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    outcome = done["outcome"]
    assert stopped == [outcome.name]
    assert outcome.code == 143 and not outcome.timed_out
    if apple:
        assert any(
            a.startswith("type=bind,source=") and a.endswith(",readonly") for a in outcome.args
        )
    ours = project.logs(folder, "runtimes")
    assert len(ours) == 1 and "the run was stopped" in ours[0].read_text()
    assert second.cleanup_orphans() == []


def test_setup_smoke_test(runtime: str, environ: dict[str, str], project: Any) -> None:
    """NanoClaw setup's check: ``echo '{}' | docker run -i --rm --entrypoint /bin/echo IMAGE
    "Container OK"`` runs in a throwaway project on the default runtime."""
    result = subprocess.run(
        "echo '{}' | docker run -i --rm --entrypoint /bin/echo nanoclaw-agent:latest "
        '"Container OK"',
        shell=True,
        env=environ,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Container OK\n"


@pytest.mark.parametrize(("main_groups", "shown"), [("whatsapp_main", "yes"), (None, "no")])
def test_command_mode_main_by_registered_folder(
    main_groups: str | None, shown: str, environ: dict[str, str], project: Any
) -> None:
    """A run with no ContainerInput (a command after the image) has no ``isMain``: the folders in
    NANOCLAW_MAIN_GROUPS are main, so NanoClaw's registered main folder gets the project there
    too; any other folder is refused it (the mount is left out, with a warning)."""
    folder = "whatsapp_main"
    group = project.group(folder)
    env = dict(environ)
    if main_groups:
        env["NANOCLAW_MAIN_GROUPS"] = main_groups
    command = [
        "docker", "run", "--rm", "--name", "nanoclaw-whatsapp-main-1",
        "-v", f"{project.root}:/workspace/project:ro",
        "-v", f"{group}:/workspace/group",
        "nanoclaw-agent:latest",
        "/bin/sh", "-c", "test -d /workspace/project/groups && echo yes || echo no",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{shown}\n"
    refused = "/workspace/project refused: the project is shown to the main group only"
    assert (refused in result.stderr) == (shown == "no"), result.stderr
