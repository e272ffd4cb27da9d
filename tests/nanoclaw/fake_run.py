"""A run registered as the core registers one, with no sandbox: for ``ps``/``stop`` tests.

``python fake_run.py NAME ROOT REPORT MODE``: registers the run NAME, prints ``ready``, and
waits. On SIGTERM it writes the grace ``stop -t`` asked for to REPORT and exits 143; with
MODE ``stubborn`` it ignores SIGTERM (only SIGKILL ends it).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from nanoclaw_runtimes_core import runs


def main() -> None:
    name, root, report, mode = sys.argv[1:5]
    with runs.registered(name, root=Path(root), group="dev", runtime="container") as active:

        def on_term(signum: int, frame: Any) -> None:
            if mode == "stubborn":
                return
            Path(report).write_text(json.dumps({"grace": active.stop_grace(-1.0)}))
            raise SystemExit(143)

        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        while True:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
