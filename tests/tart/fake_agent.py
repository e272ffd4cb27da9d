"""A test agent installed in the base VM's disk: reads the ContainerInput, prints output blocks.

The prompt picks the behaviour: ``ok``, ``fail``, ``signal``, ``hang``, ``hang-after-output``,
``env`` (the environment, cwd and uid as JSON), ``secret``, ``sleep:SECONDS``,
``write:PATH`` (try to write PATH, report success). ``hang`` variants first write
``agent.hang`` in the working directory, so a test knows the agent is running.
"""

from __future__ import annotations

import json
import os
import signal
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
    if prompt == "signal":
        block("about to die")
        os.kill(os.getpid(), signal.SIGKILL)
    if prompt in ("hang", "hang-after-output"):
        with open("agent.hang", "w") as f:
            f.write(str(os.getpid()))
        if prompt == "hang-after-output":
            block("before going quiet")
        time.sleep(600)
        return 0
    if prompt == "env":
        block(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "uid": os.getuid()}))
        return 0
    if prompt == "secret":
        secrets = inp.get("secrets") or {}
        block(f"got {len(secrets)} secret(s), API_KEY length {len(secrets.get('API_KEY', ''))}")
        return 0
    if prompt.startswith("sleep:"):
        time.sleep(float(prompt.split(":", 1)[1]))
        block("slept")
        return 0
    if prompt.startswith("write:"):
        path = prompt.split(":", 1)[1]
        try:
            with open(path, "w") as f:
                f.write("written by the agent")
            block("written")
        except OSError as exc:
            block(f"refused: {exc.strerror}")
        return 0
    block(None, status="error", error=f"unknown prompt {prompt!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
