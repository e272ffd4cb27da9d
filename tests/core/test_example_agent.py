"""The example agent: the protocol's shape, message count, errors; standard library only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nanoclaw_runtimes_core.protocol import MarkerDecoder, OutputEvent

# Refuse every third-party import the core itself uses: a sandbox may have none of them.
RUN = (
    "import sys, runpy\n"
    "for name in ('pluggy', 'attrs', 'attr', 'cattrs', 'dotenv', 'rich'):\n"
    "    sys.modules[name] = None\n"
    "runpy.run_module('nanoclaw_runtimes_core.example_agent', run_name='__main__')\n"
)


def run_agent(workspace: Path, stdin: bytes) -> tuple[int, list]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN], input=stdin, capture_output=True, cwd=workspace, timeout=60
    )
    decoder = MarkerDecoder()
    events = decoder.feed(proc.stdout) + decoder.close()
    return proc.returncode, [e.output for e in events if isinstance(e, OutputEvent)]


def test_answers_then_updates_the_session_and_counts_messages(tmp_path: Path) -> None:
    inp = {
        "prompt": "hi",
        "groupFolder": "dev",
        "chatJid": "c",
        "isMain": False,
        "sessionId": "s-1",
        "secrets": {"API_KEY": "v4lue-never-printed"},
    }
    for count in (1, 2):
        code, outputs = run_agent(tmp_path, json.dumps(inp).encode())
        assert code == 0 and len(outputs) == 2
        assert f"Message {count} in group 'dev'" in (outputs[0].result or "")
        assert "API_KEY" in (outputs[0].result or "")
        assert "v4lue-never-printed" not in (outputs[0].result or "")
        assert outputs[1].result is None and outputs[1].new_session_id == "s-1"


def test_bad_input_gives_an_error_block_and_status_2(tmp_path: Path) -> None:
    code, outputs = run_agent(tmp_path, b'{"no prompt": 1}')
    assert code == 2 and outputs[0].status == "error"
    assert "bad ContainerInput" in (outputs[0].error or "")
