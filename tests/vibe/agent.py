"""A test agent run in the stand-in's guest: speaks the NanoClaw protocol, noisily.

Prompt words steer it: ``exit N`` ends with status N; ``sleep S`` waits S seconds before
answering; ``persist`` counts runs in /root/runs (the disk); ``big N`` answers with an
N MiB result (its sha256 in a second block) while writing as much noise to stderr;
``poweroff`` powers the guest off mid-run; ``try PATH`` reports whether PATH can be
written; ``read PATH`` reports its content; ``hang`` prints a block then sleeps for ever.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

START = "---NANOCLAW_OUTPUT_" + "START---"
END = "---NANOCLAW_OUTPUT_" + "END---"


def block(obj):
    sys.stdout.write(f"{START}\n{json.dumps(obj)}\n{END}\n")
    sys.stdout.flush()


request = json.loads(sys.stdin.read())
words = request["prompt"].split()
print("\x1b[1;32magent starting\x1b[0m", flush=True)
print("some stderr noise", file=sys.stderr, flush=True)
if "sleep" in words:
    time.sleep(float(words[words.index("sleep") + 1]))
runs = 0
if "persist" in words:
    path = Path("/root/runs")
    runs = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(runs))
tried = {}
read = {}
for i, word in enumerate(words[:-1]):
    if word == "read":
        try:
            read[words[i + 1]] = Path(words[i + 1]).read_text()
        except OSError as exc:
            read[words[i + 1]] = exc.strerror
    if word == "try":
        target = words[i + 1]
        try:
            with open(target, "a") as f:
                f.write("x")
            tried[target] = "written"
        except OSError as exc:
            tried[target] = exc.strerror
if "big" in words:
    size = int(words[words.index("big") + 1]) * 2**20
    rng = random.Random(5)
    text = "".join(rng.choice('abcdefghij\n\\"é') for _ in range(size))
    for _ in range(64):
        sys.stderr.write("noise " * 1000 + "\n")
    block({"status": "success", "result": text})
    block({"status": "success", "result": hashlib.sha256(text.encode()).hexdigest()})
    sys.exit(0)
extra = {}
if os.path.isdir("/workspace/extra"):
    for name in sorted(os.listdir("/workspace/extra")):
        folder = os.path.join("/workspace/extra", name)
        files = sorted(os.listdir(folder))
        try:
            with open(os.path.join(folder, "probe-" + str(os.getpid())), "w") as f:
                f.write("probe")
            writable = True
        except OSError:
            writable = False
        extra[name] = {"files": files, "writable": writable}
answer = {
    "prompt": request["prompt"],
    "group": request["groupFolder"],
    "runs": runs,
    "secret_names": sorted((request.get("secrets") or {}).keys()),
    "stdin_is_file": os.path.isfile("/proc/self/fd/0"),
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "pid": os.getpid(),
    "env": sorted(os.environ),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "tried": tried,
    "read": read,
    "extra": extra,
    "root_files": sorted(os.listdir("/root")),
    "opt": Path("/opt/marker").read_text().strip() if os.path.exists("/opt/marker") else None,
    "shared_visible": os.path.isdir("/mnt/shared") and bool(os.listdir("/mnt/shared")),
    "control_visible": os.path.exists("/nanoclaw/ctl"),
    "ifaces": sorted(
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    ),
}
block({"status": "success", "result": json.dumps(answer)})
block({"status": "success", "result": None, "newSessionId": "s-1"})
if "poweroff" in words:
    subprocess.run(["poweroff"])
    time.sleep(30)
if "hang" in words:
    time.sleep(3600)
sys.exit(int(words[words.index("exit") + 1]) if "exit" in words else 0)
