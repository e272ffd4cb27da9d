"""A stand-in agent for the guest: reads the ContainerInput on stdin, prints output blocks.

The prompt picks the behaviour: ``ok``, ``fail``, ``hang``, ``hang-after-output``,
``env``, ``secret``, ``sleep:SECONDS``. ``hang`` variants write their pid to
``agent.pid`` in the working directory first, so a test can check it was ended.
"""

from __future__ import annotations

import json
import os
import sys
import time

START, END = "---NANOCLAW_OUTPUT_START---", "---NANOCLAW_OUTPUT_END---"


def block(result: str | None, status: str = "success", **extra: str) -> None:
    print(START)
    print(json.dumps({"status": status, "result": result, **extra}))
    print(END, flush=True)


def main() -> int:
    inp = json.loads(sys.stdin.read())
    prompt = inp["prompt"]
    if prompt == "ok":
        print("some log line outside the blocks", flush=True)
        block(f"hello {inp['groupFolder']}")
        block(None, newSessionId="session-2")
        return 0
    if prompt == "fail":
        block("partial")
        print("agent: something broke", file=sys.stderr, flush=True)
        return 3
    if prompt in ("hang", "hang-after-output"):
        with open("agent.pid", "w") as f:
            f.write(str(os.getpid()))
        if prompt == "hang-after-output":
            block("before going quiet")
        time.sleep(600)
        return 0
    if prompt == "env":
        keys = [k for k in os.environ if k.startswith("NANOCLAW_") or k == "CLAUDE_CONFIG_DIR"]
        env = {k: os.environ[k] for k in keys}
        real = {k: os.path.realpath(v) for k, v in env.items() if v.startswith("/")}
        block(json.dumps({"cwd": os.getcwd(), "env": env, "real": real}))
        return 0
    if prompt == "secret":
        secrets = inp.get("secrets") or {}
        block(f"got {len(secrets)} secret(s), API_KEY length {len(secrets.get('API_KEY', ''))}")
        return 0
    if prompt.startswith("sleep:"):
        time.sleep(float(prompt.split(":", 1)[1]))
        block("slept")
        return 0
    block(None, status="error", error=f"unknown prompt {prompt!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
