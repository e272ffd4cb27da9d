"""A test agent run inside the stand-in's guest: speaks the NanoClaw protocol, noisily.

Prompt words steer it: ``exit N`` ends with status N, ``sleep S`` waits S seconds first,
``poweroff`` powers the guest off mid-run, ``persist`` counts runs in /root/runs (the disk).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

START = "---NANOCLAW_OUTPUT_" + "START---"
END = "---NANOCLAW_OUTPUT_" + "END---"

request = json.loads(sys.stdin.read())
words = request["prompt"].split()
print("\x1b[1;32magent starting\x1b[0m", flush=True)
print("some stderr noise", file=sys.stderr, flush=True)
if "sleep" in words:
    time.sleep(float(words[words.index("sleep") + 1]))
runs = 0
if "persist" in words:
    path = "/root/runs"
    runs = int(Path(path).read_text()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(runs))
opt = Path("/opt/marker").read_text().strip() if os.path.exists("/opt/marker") else None
answer = {
    "prompt": request["prompt"],
    "group": request["groupFolder"],
    "runs": runs,
    "opt": opt,
    "secret_names": sorted((request.get("secrets") or {}).keys()),
    "stdin_is_file": os.path.isfile("/proc/self/fd/0"),
    "cwd": os.getcwd(),
}
block = json.dumps({"status": "success", "result": json.dumps(answer)})
sys.stdout.write(f"{START}\n{block}\n{END}\n")
sys.stdout.write(
    f"{START}\n"
    + json.dumps({"status": "success", "result": None, "newSessionId": "s-1"})
    + f"\n{END}\n"
)
sys.stdout.flush()
if "poweroff" in words:
    subprocess.run(["systemctl", "poweroff"])
sys.exit(int(words[words.index("exit") + 1]) if "exit" in words else 0)
