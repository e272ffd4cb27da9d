#!/usr/bin/env python3
"""What NanoClaw's runs cost through ``nanoclaw-runtimes-docker``, per runtime, against bare
``docker run`` of the same agent and image.

Each run is driven as NanoClaw v1.2.53 drives one: ``docker run -i --rm --name
nanoclaw-bench-<ms> -e TZ=UTC --add-host=... -v GROUP:/workspace/group -v IPC:/workspace/ipc
... IMAGE`` spawned from PATH, the ContainerInput written to stdin and stdin closed, stdout
read as it comes. It times, from the spawn:

- **first block**: the first complete ``---NANOCLAW_OUTPUT_START--- ... END---`` block;
- **end**: NanoClaw's idle ``_close`` is written as soon as the first result arrived, and the
  run is over when the process has exited and its pipes closed.

The agent is tests/nanoclaw/agent_runner.sh (NanoClaw's agent-runner protocol, sh and awk).
Cases, interleaved round by round so drift hits all alike:

- ``adapter/container-bubblewrap``: the adapter linked as ``docker``, the container runtime
  on bubblewrap;
- ``adapter/container-docker``: the same runtime on the real Docker, image IMAGE (needs
  Docker: ``eval "$(bash scripts/engines.sh start)"``);
- ``adapter/vibe-qemu``: the vibe runtime on QEMU (a minimal base is built first, not timed),
  its VM kept booted between runs (``keepWarm``, the default), as NanoClaw's next message to
  the group finds it;
- ``adapter/vibe-qemu-cold``: the same with ``VIBE_KEEP_WARM=0``: a VM boots for every run;
- ``bare docker run``: the real ``docker run -i --rm --network none`` of IMAGE with the same
  mounts and agent, no adapter (needs Docker).

Printed: median and p90 of both times per case, and each case's ratio to bare docker.

    python3 bench/nanoclaw_adapter.py [--runs 10] [--cases a,b,...] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "tests" / "nanoclaw" / "agent_runner.sh"
START, END = b"---NANOCLAW_OUTPUT_START---", b"---NANOCLAW_OUTPUT_END---"
CASES = (
    "adapter/container-bubblewrap",
    "adapter/container-docker",
    "adapter/vibe-qemu",
    "adapter/vibe-qemu-cold",
    "bare",
)
FOLDER = "bench"


def real_docker(link_dir: Path) -> str | None:
    """The real docker client (not the adapter's link), if Docker answers."""
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != str(link_dir)
    )
    found = shutil.which("docker", path=path)
    if found is None:
        return None
    ok = subprocess.run([found, "info"], capture_output=True, timeout=20).returncode == 0
    return found if ok else None


class Project:
    """A NanoClaw project with one group holding the agent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.group = root / "groups" / FOLDER
        self.ipc = root / "data" / "ipc" / FOLDER
        self.sessions = root / "data" / "sessions" / FOLDER / ".claude"
        for folder in (self.group, root / "groups" / "global", self.sessions):
            folder.mkdir(parents=True, exist_ok=True)
        for sub in ("messages", "tasks", "input"):
            (self.ipc / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(AGENT, self.group / "agent.sh")

    def mounts(self) -> list[str]:
        return [
            "-v", f"{self.group}:/workspace/group",
            "-v", f"{self.root / 'groups' / 'global'}:/workspace/global:ro",
            "-v", f"{self.sessions}:/home/node/.claude",
            "-v", f"{self.ipc}:/workspace/ipc",
        ]  # fmt: skip


def one_run(argv: list[str], env: dict[str, str], project: Project) -> tuple[float, float]:
    """(seconds to the first block, seconds to the end) of one run, as NanoClaw sees them."""
    payload = {"prompt": "results 1", "groupFolder": FOLDER, "chatJid": "b@g", "isMain": False}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(json.dumps(payload, separators=(",", ":")).encode())
    proc.stdin.close()
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    buffer, first = b"", None
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 65536):
        buffer += chunk
        at = buffer.find(START)
        if first is None and at >= 0 and buffer.find(END, at) >= 0:
            first = time.perf_counter() - start
            (project.ipc / "input" / "_close").write_text("")
    code = proc.wait(timeout=300)
    drain.join(timeout=30)
    end = time.perf_counter() - start
    if code != 0 or first is None:
        tail = b"".join(errors).decode(errors="replace")[-600:]
        raise SystemExit(f"{argv[0]} {argv[1]}: status {code}, first block {first}: {tail}")
    return first, end


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--image", default="nanoclaw-test/busybox:latest")
    args = parser.parse_args()
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    top = Path(tempfile.mkdtemp(prefix="nc-bench-"))
    try:
        run_bench(top, wanted, args.runs, args.image)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_bench(top: Path, wanted: list[str], runs: int, image: str) -> None:
    link_dir = top / "bin"
    link_dir.mkdir()
    script = shutil.which("nanoclaw-runtimes-docker") or str(
        Path(sys.executable).parent / "nanoclaw-runtimes-docker"
    )
    (link_dir / "docker").symlink_to(script)
    docker = real_docker(link_dir)
    base_env = {
        **os.environ,
        "PATH": f"{link_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "NANOCLAW_RUNS_DIR": str(top / "runs"),
        "CONTAINER_AGENT_COMMAND": "/bin/sh /workspace/group/agent.sh",
    }
    setups: dict[str, dict[str, str]] = {
        "adapter/container-bubblewrap": {
            "CONTAINER_RUNTIME": "container",
            "NANOCLAW_RUNTIMES_LOAD": "container",
            "CONTAINER_ENGINE": "bubblewrap",
        },
        "adapter/container-docker": {
            "CONTAINER_RUNTIME": "container",
            "NANOCLAW_RUNTIMES_LOAD": "container",
            "CONTAINER_ENGINE": "docker",
            "CONTAINER_IMAGE": image,
        },
        "adapter/vibe-qemu": {
            "CONTAINER_RUNTIME": "vibe",
            "NANOCLAW_RUNTIMES_LOAD": "vibe",
            "VIBE_ENGINE": "qemu",
            "VIBE_IMAGES_DIR": str(top / "vibe-images"),
            "VIBE_RAM": "512",
        },
    }
    setups["adapter/vibe-qemu-cold"] = {
        **setups["adapter/vibe-qemu"],
        "VIBE_KEEP_WARM": "0",
        "VIBE_IMAGES_DIR": str(top / "vibe-images-cold"),  # a disk is booted by one VM at once
    }
    cases: list[str] = []
    for case in wanted:
        if case in ("bare", "adapter/container-docker") and docker is None:
            print(f"skipped {case}: Docker is not running here (scripts/engines.sh start)")
        elif case.startswith("adapter/vibe") and not prepare_vibe(
            top, {**base_env, **setups[case]}
        ):
            continue
        elif case in CASES:
            cases.append(case)
        else:
            raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
    projects = {case: Project(top / case.replace("/", "-")) for case in cases}
    times: dict[str, list[tuple[float, float]]] = {case: [] for case in cases}
    try:
        measure(cases, projects, times, runs, docker, image, base_env, setups)
    finally:
        for case in cases:
            if case.startswith("adapter/vibe"):
                stop_warm(projects[case], {**base_env, **setups[case]})
    report(cases, times)


def measure(
    cases: list[str],
    projects: dict[str, Project],
    times: dict[str, list[tuple[float, float]]],
    runs: int,
    docker: str | None,
    image: str,
    base_env: dict[str, str],
    setups: dict[str, dict[str, str]],
) -> None:
    """Every case once per round, ``runs`` rounds after one that warms caches."""
    for i in range(runs + 1):  # the first round warms caches and is not counted
        for case in cases:
            project = projects[case]
            name = ["--name", f"nanoclaw-bench-{int(time.time() * 1000)}"]
            common = ["-i", "--rm", *name, "-e", "TZ=UTC"]
            if case == "bare":
                assert docker is not None
                argv = [docker, "run", *common, "--network", "none", *project.mounts()]
                argv += [image, "/bin/sh", "/workspace/group/agent.sh"]
                env = dict(os.environ)
            else:
                argv = ["docker", "run", *common, "--add-host=host.docker.internal:host-gateway"]
                argv += [*project.mounts(), "nanoclaw-agent:latest"]
                env = {**base_env, **setups[case]}
            took = one_run(argv, env, project)
            if i:
                times[case].append(took)


def report(cases: list[str], times: dict[str, list[tuple[float, float]]]) -> None:
    """The table, then each case's ratio to bare docker."""
    bare = times.get("bare")
    print(f"{'case':32} {'first block ms (median / p90)':>30} {'end ms (median / p90)':>24}")
    for case in cases:
        first = summary([t[0] for t in times[case]])
        end = summary([t[1] for t in times[case]])
        print(f"{case:32} {first[0]:14.0f} / {first[1]:<13.0f} {end[0]:10.0f} / {end[1]:<10.0f}")
    if bare:
        bare_first = summary([t[0] for t in bare])[0]
        bare_end = summary([t[1] for t in bare])[0]
        for case in cases:
            if case == "bare":
                continue
            first = summary([t[0] for t in times[case]])[0]
            end = summary([t[1] for t in times[case]])[0]
            ratios = f"first block {first / bare_first:.2f}x, end {end / bare_end:.2f}x"
            print(f"{case}: {ratios} bare docker")


def stop_warm(project: Project, env: dict[str, str]) -> None:
    """Power off the group's warm VM before its project folder goes."""
    code = (
        "from nanoclaw_runtimes_core import Runtimes\n"
        f"Runtimes({str(project.root)!r}).reset({FOLDER!r}, scope='warm')\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)


def prepare_vibe(top: Path, env: dict[str, str]) -> bool:
    """Build the minimal base for the vibe case; False (and why) when QEMU cannot run."""
    scratch = Path(tempfile.mkdtemp(prefix="vibe-base-", dir=top))
    (scratch / "groups").mkdir()
    code = (
        "import sys\n"
        "from nanoclaw_runtimes_core import Runtimes\n"
        f"rt = Runtimes({str(scratch)!r})\n"
        "status = rt.engine_status('vibe')\n"
        "if status is not None and not status.available:\n"
        "    sys.exit('QEMU unavailable: ' + status.detail)\n"
        "rt.prepare(base_runtime='vibe', options={'minimal': True})\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"skipped adapter/vibe-qemu: {(result.stderr or result.stdout).strip()[-400:]}")
        return False
    print(f"vibe minimal base built in {time.perf_counter() - started:.1f} s (not timed below)")
    return True


if __name__ == "__main__":
    main()
