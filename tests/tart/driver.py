"""Runs one tart execution in its own process, like the CLI would (SIGTERM -> SystemExit).

Usage: driver.py ROOT SLOTS_DIR PROMPT [FOLDER] [TIMEOUT_MS]. Prints the result as JSON.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nanoclaw_runtime_tart import plugin
from tart_harness import RecordingSink, make_request, make_settings


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    root, slots, prompt = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    folder = sys.argv[4] if len(sys.argv) > 4 else "g1"
    timeout_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 60_000
    signal.signal(signal.SIGTERM, _terminate)
    sink = RecordingSink()
    request = make_request(
        root, make_settings(slots), prompt=prompt, folder=folder, timeout_ms=timeout_ms, sink=sink
    )
    print("started", flush=True)
    result = plugin.execute(request=request)
    print(
        json.dumps(
            {
                "exit_code": result.exit_code,
                "status": result.status,
                "error": result.error,
                "outputs": [o.result for o in result.outputs],
                "problems": sink.problems,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
