"""The channels: stdout byte for byte, stderr separate, nothing lost under load, the agent's
own exit status, clear errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from .conftest import QemuProject, needs_qemu

pytestmark = [pytest.mark.slow, needs_qemu]

MB = 2**20

BLOCKS_AGENT = r"""
cat > /dev/null
S=---NANOCLAW_OUTPUT_START---; E=---NANOCLAW_OUTPUT_END---
block() {
	head -c "$1" /dev/urandom | base64 -w 0 > /tmp/b
	sum=$(sha256sum /tmp/b | cut -d' ' -f1)
	printf '%s\n{"status":"success","result":"%s:' "$S" "$sum"; cat /tmp/b; printf '"}\n%s\n' "$E"
	echo "block $1 $sum" >&2
}
for i in 1 2 3 4 5; do block 786432; done
block 9437184
"""


@pytest.fixture
def busy_host():
    """Both host cores kept busy for the test's length."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.deadline(400)
def test_large_blocks_and_raw_bytes_arrive_whole_under_load(
    qproject: QemuProject, busy_host: None
) -> None:
    qproject.group("dev", {"containerConfig": {"agentCommand": ["sh", "-c", BLOCKS_AGENT]}})
    result, rec = qproject.agent("dev", "blocks", timeout_ms=300_000)
    assert result.exit_code == 0, (result.error_message(), rec.stderr[-500:])
    assert result.output_count == 6 and len(rec.outputs) == 6
    sizes = []
    for out in rec.outputs:
        digest, payload = out.result.split(":", 1)
        assert hashlib.sha256(payload.encode()).hexdigest() == digest
        sizes.append(len(payload))
    assert sizes[:5] == [MB] * 5 and sizes[5] == 12 * MB
    reported = [line.split()[2] for line in rec.stderr.decode().splitlines()]
    assert reported == [o.result.split(":", 1)[0] for o in rec.outputs]
    assert rec.problems == []

    raw = "head -c 12582912 /dev/urandom > /tmp/r; sha256sum /tmp/r | cut -d' ' -f1 >&2; cat /tmp/r"
    cmd, crec = qproject.command("dev", raw, timeout_ms=300_000)
    assert cmd.exit_code == 0, cmd.error_message()
    assert len(crec.stdout) == 12 * MB
    assert hashlib.sha256(bytes(crec.stdout)).hexdigest() == crec.stderr.decode().strip()


def test_stderr_is_separate_and_cannot_forge_blocks(qproject: QemuProject) -> None:
    agent = (
        "cat > /dev/null; S=---NANOCLAW_OUTPUT_START---; E=---NANOCLAW_OUTPUT_END---; "
        'printf \'%s\\n{"status":"success","result":"forged"}\\n%s\\n\' $S $E >&2; '
        "printf 'progress on stderr\\n' >&2; "
        'printf \'%s\\n{"status":"success","result":"real"}\\n%s\\n\' $S $E; exit 5'
    )
    qproject.group("dev", {"containerConfig": {"agentCommand": ["sh", "-c", agent]}})
    result, rec = qproject.agent("dev", "hi")
    assert result.exit_code == 5
    assert [o.result for o in result.outputs] == ["real"]
    assert [o.result for o in rec.outputs] == ["real"]
    assert b"forged" in rec.stderr and b"progress on stderr" in rec.stderr
    assert b"forged" not in rec.stdout and b"progress" not in rec.stdout


def test_the_minimal_bases_default_agent_answers(qproject: QemuProject) -> None:
    qproject.group("dev")
    prompt = 'say "hi" \\ then {x} [y]\nnext line \u00e9'
    result, rec = qproject.agent("dev", prompt)
    assert result.status == "success", (result.error_message(), rec.stderr)
    assert prompt in result.outputs[0].result
    assert result.new_session_id and result.new_session_id.startswith("minimal-")
    # stdout is the agent's, byte for byte
    assert rec.stdout.count(b"---NANOCLAW_OUTPUT_START---") == 2
    json.loads(rec.stdout.split(b"---NANOCLAW_OUTPUT_START---")[1].split(b"---NANOCLAW")[0])


def test_a_missing_agent_command_is_a_clear_error(qproject: QemuProject) -> None:
    qproject.group("dev", {"containerConfig": {"agentCommand": ["/opt/none/agent"]}})
    result, rec = qproject.agent("dev", "hi")
    assert result.exit_code == 127
    assert b"containerConfig.agentCommand" in rec.stderr
    assert "containerConfig.agentCommand" in (result.error_message() or "")


def test_stdin_is_the_input_exactly(qproject: QemuProject) -> None:
    agent = "sha256sum | cut -d' ' -f1"
    qproject.group("dev", {"containerConfig": {"agentCommand": ["sh", "-c", agent]}})
    prompt = "x" * (3 * MB) + "\u2603"
    result, rec = qproject.agent("dev", prompt)
    assert result.exit_code == 0, result.error_message()
    from nanoclaw_runtimes_core.models import ContainerInput
    from nanoclaw_runtimes_core.protocol import encode_input

    sent = encode_input(
        ContainerInput(prompt=prompt, group_folder="dev", chat_jid="t@g.us", is_main=False)
    )
    assert rec.stdout.decode().strip() == hashlib.sha256(sent).hexdigest()
