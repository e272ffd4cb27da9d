"""A small agent that speaks the NanoClaw protocol, for demos and tests.

It reads one ContainerInput JSON object on stdin, keeps a message count in its
working directory (the group's workspace, so it persists as the workspace
does), and prints two output blocks: its answer, then a session update with
``result: null`` — the shape NanoClaw's own agent produces. It never prints
secrets. Run it as ``python3 -m nanoclaw_runtimes_core.example_agent``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

START = "---NANOCLAW_OUTPUT_START---"
END = "---NANOCLAW_OUTPUT_END---"
HISTORY = ".example-agent-history"


def emit(block: dict[str, object]) -> None:
    sys.stdout.write(f"{START}\n{json.dumps(block, ensure_ascii=False)}\n{END}\n")
    sys.stdout.flush()


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        prompt = str(request["prompt"])
    except (ValueError, KeyError, TypeError) as exc:
        emit({"status": "error", "result": None, "error": f"bad ContainerInput: {exc}"})
        return 2
    history = Path.cwd() / HISTORY
    try:
        count = int(history.read_text()) + 1 if history.exists() else 1
        history.write_text(str(count))
    except (OSError, ValueError):
        count = 0  # a read-only or foreign workspace: answer anyway
    name = request.get("assistantName") or "Andy"
    secrets = sorted((request.get("secrets") or {}).keys())
    answer = (
        f"{name} here (example agent). You said: {prompt!r}. "
        f"Message {count} in group {request.get('groupFolder')!r}"
        + (f"; secrets received: {', '.join(secrets)}" if secrets else "")
        + "."
    )
    emit({"status": "success", "result": answer})
    session = request.get("sessionId") or f"example-{os.urandom(4).hex()}"
    emit({"status": "success", "result": None, "newSessionId": session})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
