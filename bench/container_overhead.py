#!/usr/bin/env python3
"""What the container runtime adds to the engine it drives: docker, podman and bubblewrap.

For each engine usable here, in one run, interleaved (so a change of load hits both sides):

- ``-- true``: ``nanoclaw-runtimes run GROUP -- true`` against the bare engine command of the
  same image that the runtime builds for it (the same flags and mounts; the environment in a
  file instead of a pipe);
- agent: one ContainerInput through ``nanoclaw-runtimes run GROUP`` (the sample agent image's
  example agent) against the same bare command fed the same input;
- resident: the same two CLI runs with ``NANOCLAW_RESIDENT`` set, handed to a resident
  helper (which the warm-up starts and the end stops);
- in process: ``Runtimes.execute`` of ``true`` in this process (no interpreter start-up, no
  imports), the share a host embedding the core pays;
- the floor: ``python3 -c pass`` and ``nanoclaw-runtimes --help`` (interpreter start-up and
  the CLI's imports), which every CLI run pays whatever the engine.

It prints median and p90 of each in milliseconds, the difference and ratio to the bare
engine, and whether the goal is met (the CLI adds at most 60 ms to the bare engine), without
and with the helper.

    python3 bench/container_overhead.py [--runs 15] [--engines docker,podman,bubblewrap]

docker and podman need their engine's environment (``eval "$(bash scripts/engines.sh
start)"`` on a development machine: DOCKER_HOST, CONTAINERS_CONF) and the images
nanoclaw-test/busybox:latest and python:3.12-slim; the agent image is built with
``prepare --base container`` when missing. For bubblewrap the bare command is ``bwrap`` with
the same namespaces and contract mounts, as the sandbox user, over the host's system folders.
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.identity import sandbox_user

GOAL_MS = 60.0
CORE = "nanoclaw_runtimes_core"
GROUP = "bench"
BUSYBOX = "nanoclaw-test/busybox:latest"
AGENT_IMAGE = "nanoclaw-runtimes-agent:latest"
INPUT = json.dumps(
    {"prompt": "bench", "groupFolder": GROUP, "chatJid": "bench@g.us", "isMain": False}
).encode()


def timed(argv: Sequence[str], *, env: dict[str, str], stdin: bytes = b"") -> float:
    """Seconds from start to exit of one run of ``argv``; it must exit 0."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), input=stdin, capture_output=True, env=env, timeout=300)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:6])}... exited {done.returncode}: {done.stderr.decode()[-500:]}"
        )
    return took


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]


class Bench:
    """A throw-away project and the environment of the CLI runs."""

    def __init__(self) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="nanoclaw-bench-"))
        self.top.chmod(0o755)
        self.root = self.top / "project"
        for folder in ("groups/global", f"groups/{GROUP}", "data"):
            (self.root / folder).mkdir(parents=True)
        for path in (self.root, self.root / "groups"):
            path.chmod(0o755)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTAINER_", "NANOCLAW_")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        self.env.update(
            CONTAINER_RUNTIME="container",
            NANOCLAW_RUNTIMES_LOAD="container",
            NANOCLAW_MOUNT_ALLOWLIST=str(self.top / "allowlist.json"),
        )
        self.runs = self.top / "runs"
        self.resident = {"NANOCLAW_RESIDENT": "600000", "NANOCLAW_RUNS_DIR": str(self.runs)}

    def cli(self, *args: str) -> list[str]:
        """The console script a user (and NanoClaw) runs; ``python -m`` would add runpy's
        imports, some 7 ms, to every figure."""
        script = Path(sys.executable).with_name("nanoclaw-runtimes")
        command = [str(script)] if script.is_file() else [sys.executable, "-m", CORE]
        return [*command, "--root", str(self.root), *args]

    def engine_env(self, engine: str, image: str) -> dict[str, str]:
        return {**self.env, "CONTAINER_ENGINE": engine, "CONTAINER_IMAGE": image}

    def request(self, engine: str, image: str, *, agent: bool) -> nc.ExecuteRequest[Any]:
        """The request a CLI run of the group makes (after one run materialised its folders)."""
        runtimes = nc.Runtimes(self.root, environ=self.engine_env(engine, image))
        plan = runtimes.plan(GROUP)
        return nc.ExecuteRequest(
            project=plan.project,
            group=plan.group,
            settings=plan.settings,
            mounts=plan.mounts.mounts,
            masks=(),
            timeout_ms=60_000,
            input=nc.ContainerInput(
                prompt="bench", group_folder=GROUP, chat_jid="bench@g.us", is_main=False
            )
            if agent
            else None,
            command=None if agent else ("true",),
            env={},
            user=sandbox_user(""),
            state_dir=plan.state_dir,
        )

    def remove(self) -> None:
        from nanoclaw_runtimes_core.resident import control

        if self.runs.is_dir():
            control.stop(self.runs)
        shutil.rmtree(self.top, ignore_errors=True)

    def wait_for_helper(self) -> None:
        from nanoclaw_runtimes_core.resident import control

        control.wait_for_helper(self.runs)


def image_bare(bench: Bench, engine: str, image: str, *, agent: bool) -> Callable[[], list[str]]:
    """A function giving the bare ``docker run``/``podman run`` the runtime builds (a fresh
    container name each time), with the sandbox environment in a file."""
    from nanoclaw_runtime_container.engines import make_engine
    from nanoclaw_runtime_container.engines.image_engine import ImageEngine, env_file_text

    eng = make_engine(engine)
    assert isinstance(eng, ImageEngine)
    request = bench.request(engine, image, agent=agent)
    env_file = bench.top / f"{engine}.env"
    env_file.write_bytes(env_file_text(request))
    count = iter(range(10**9))
    return lambda: eng.run_argv(
        request, f"nc-bench-bare-{os.getpid()}-{next(count)}", str(env_file)
    )


def bwrap_bare(bench: Bench, *, agent: bool) -> list[str]:
    """bwrap with the runtime's namespaces and contract mounts, as the sandbox user."""
    request = bench.request("bubblewrap", BUSYBOX, agent=agent)
    user = request.user
    argv: list[str] = []
    if os.geteuid() == 0:
        argv += ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
    argv += ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    for folder in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"):
        if os.path.islink(folder):
            argv += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for mount in request.mounts:
        argv += [
            "--ro-bind" if mount.readonly else "--bind",
            str(mount.host_path),
            mount.container_path,
        ]
    agent_file = nc.example_agent_file()
    argv += ["--ro-bind", str(agent_file), nc.EXAMPLE_AGENT, "--chdir", nc.WORKDIR, "--clearenv"]
    for key, value in nc.sandbox_env(request).items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *(["python3", nc.EXAMPLE_AGENT] if agent else ["true"])]


def usable(engine: str) -> str:
    """Why ``engine`` cannot be measured here ("" when it can)."""
    from nanoclaw_runtime_container.engines import make_engine

    status = make_engine(engine).status()
    return "" if status.available else f"{status.detail} {status.fix}".strip()


def measure(bench: Bench, engine: str, runs: int) -> dict[str, Any]:
    """Every measure of one engine, interleaved."""
    env_true = bench.engine_env(engine, BUSYBOX)
    env_agent = bench.engine_env(engine, AGENT_IMAGE)
    if engine != "bubblewrap":
        built = subprocess.run(
            bench.cli("prepare", "--base", "container"), env=env_agent, capture_output=True
        )
        if built.returncode != 0:
            raise SystemExit(f"{engine}: prepare --base container failed: {built.stderr.decode()}")
    ours_true = bench.cli("run", GROUP, "--", "true")
    ours_agent = bench.cli("run", GROUP)
    if engine == "bubblewrap":
        bare_true: Callable[[], list[str]] = lambda: bwrap_bare(bench, agent=False)  # noqa: E731
        bare_agent: Callable[[], list[str]] = lambda: bwrap_bare(bench, agent=True)  # noqa: E731
    else:
        timed(ours_true, env=env_true)  # materialises the group's folders first
        bare_true = image_bare(bench, engine, BUSYBOX, agent=False)
        bare_agent = image_bare(bench, engine, AGENT_IMAGE, agent=True)
    host_env = {**os.environ}
    resident_true = {**env_true, **bench.resident}
    resident_agent = {**env_agent, **bench.resident}
    runtimes = nc.Runtimes(bench.root, environ=env_true)

    def in_process() -> float:
        start = time.perf_counter()
        result = runtimes.execute(GROUP, command=["true"])
        if result.exit_code != 0:
            raise SystemExit(f"{engine}: in-process run failed: {result.error_message()}")
        return time.perf_counter() - start

    cases: dict[str, Callable[[], float]] = {
        "true: nanoclaw-runtimes": lambda: timed(ours_true, env=env_true),
        "true: bare engine": lambda: timed(bare_true(), env=host_env),
        "agent: nanoclaw-runtimes": lambda: timed(ours_agent, env=env_agent, stdin=INPUT),
        "agent: bare engine": lambda: timed(bare_agent(), env=host_env, stdin=INPUT),
        "true: resident helper": lambda: timed(ours_true, env=resident_true),
        "agent: resident helper": lambda: timed(ours_agent, env=resident_agent, stdin=INPUT),
        "true: in process": in_process,
    }
    for run in cases.values():  # warm-up: caches, byte code, images, the helper
        run()
    bench.wait_for_helper()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs):
        order = list(cases.items())
        for name, run in order if i % 2 == 0 else reversed(order):
            times[name].append(run())
    return {name: summary(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--engines", default="docker,podman,bubblewrap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bench = Bench()
    results: dict[str, Any] = {}
    floor = {"python3 -c pass": [sys.executable, "-c", "pass"], "cli --help": bench.cli("--help")}
    floor_times: dict[str, list[float]] = {name: [] for name in floor}
    for _ in range(args.runs + 1):
        for name, argv in floor.items():
            floor_times[name].append(timed(argv, env=bench.env))
    results["floor"] = {name: summary(values[1:]) for name, values in floor_times.items()}
    try:
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            why = usable(engine)
            if why:
                print(f"{engine}: skipped: {why}", file=sys.stderr)
                continue
            results[engine] = measure(bench, engine, args.runs)
    finally:
        bench.remove()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    ok = ok_resident = True
    print(f"median / p90 ms over {args.runs} runs each; goal: the CLI adds at most {GOAL_MS:g} ms")
    print(f"{'engine':<11} {'case':<26} {'median':>8} {'p90':>8} {'added':>8} {'ratio':>6}")
    for name, (median, p90) in results["floor"].items():
        print(f"{'floor':<11} {name:<26} {median:8.0f} {p90:8.0f}")
    for engine, found in results.items():
        if engine == "floor":
            continue
        for kind in ("true", "agent"):
            bare = found[f"{kind}: bare engine"]
            print(f"{engine:<11} {kind + ': bare engine':<26} {bare[0]:8.0f} {bare[1]:8.0f}")
            for how in ("nanoclaw-runtimes", "resident helper"):
                ours = found[f"{kind}: {how}"]
                added = ours[0] - bare[0]
                if how == "nanoclaw-runtimes":
                    ok = ok and added <= GOAL_MS
                else:
                    ok_resident = ok_resident and added <= GOAL_MS
                print(
                    f"{engine:<11} {kind + ': ' + how:<26} {ours[0]:8.0f} {ours[1]:8.0f} "
                    f"{added:+8.0f} {ours[0] / bare[0]:6.2f}"
                )
        inproc, bare = found["true: in process"], found["true: bare engine"]
        print(
            f"{engine:<11} {'true: in process':<26} {inproc[0]:8.0f} {inproc[1]:8.0f} "
            f"{inproc[0] - bare[0]:+8.0f} {inproc[0] / bare[0]:6.2f}"
        )
    print(f"without the helper: goal {'met' if ok else 'NOT met'}")
    print(f"with the resident helper: goal {'met' if ok_resident else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
