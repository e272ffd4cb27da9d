#!/usr/bin/env python3
"""What `nanoclaw-runtimes run GROUP -- CMD` on bubblewrap costs over the bare bwrap it runs.

For N runs each, interleaved so that drift hits every case alike, it times (from
process start):

- the whole CLI run of `true`: `nanoclaw-runtimes run --runtime container GROUP -- true`;
- the bare bwrap the runtime starts for it: the same options, descriptors and user;
- that bwrap without the hardening (no --disable-userns, --cap-drop ALL, --new-session,
  --die-with-parent; as this user, not dropped to the sandbox user), to show what the
  hardening costs;
- the runtime's execute hook in this process (no interpreter start, no plugin loading);

and prints median and p90 of each, and the CLI's overhead (goal: at most 100 ms).

    python3 bench/container_overhead.py [--runs 20] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nanoclaw_runtime_container.engines import bubblewrap

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.identity import sandbox_user
from nanoclaw_runtimes_core.process import launch_prefix

GROUP = "bench"
ENV = {"CONTAINER_ENGINE": "bubblewrap", "NANOCLAW_RUNTIMES_LOAD": "container"}
HARDENING = {"--disable-userns", "--new-session", "--die-with-parent"}


def timed(
    argv: Sequence[str], *, env: dict[str, str] | None = None, fds: Sequence[int] = ()
) -> float:
    """Seconds one run of ``argv`` takes; it must succeed."""
    start = time.perf_counter()
    code = subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, pass_fds=fds
    ).returncode
    took = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{argv[0]} exited with {code}")
    return took


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]


def bare_run(runtimes: nc.Runtimes, *, hardened: bool) -> Callable[[], float]:
    """A function timing one bare bwrap of the group's sandbox running `true`."""
    plan = runtimes.plan(GROUP)
    user = sandbox_user(plan.core.sandbox_user)
    bwrap = bubblewrap.bwrap_path()
    probe = bubblewrap.ready_probe(bwrap, user)
    sandbox = bubblewrap.Sandbox(
        mounts=plan.mounts.mounts,
        masks=plan.mounts.masks,
        command=("true",),
        env={"HOME": nc.SANDBOX_HOME, "PATH": nc.SANDBOX_PATH},
        hostname="nanoclaw-bench",
        network=False,
        rootfs=None,
    )

    def once() -> float:
        with bubblewrap.build_layout(sandbox, probe, user, []) as layout:
            if not hardened:
                words, layout.inner = layout.inner, []
                skip = False
                for word in words:
                    if skip or word in HARDENING:
                        skip = False
                        continue
                    if word == "--cap-drop":
                        skip = True
                        continue
                    layout.inner.append(word)
            argv = layout.argv(
                bwrap, ["true"], drop_to=(user.uid, user.gid) if layout.staged else None
            )
            prefix = launch_prefix(user=user, limits=None, die_with_parent=True) if hardened else []
            return timed([*prefix, *argv], env=dict(nc.HOST_ENV), fds=layout.fds)

    return once


def in_process(runtimes: nc.Runtimes) -> Callable[[], float]:
    """A function timing one call of the runtime's execute hook for `-- true`."""
    from nanoclaw_runtime_container import plugin

    from nanoclaw_runtimes_core.plan import env_for_sandbox

    plan = runtimes.plan(GROUP)
    request = nc.ExecuteRequest(
        project=runtimes.project,
        group=plan.group,
        settings=plan.settings,
        mounts=plan.mounts.mounts,
        masks=plan.mounts.masks,
        timeout_ms=60_000,
        command=("true",),
        env=env_for_sandbox(plan.core, runtimes.environ),
        run_name="nc-bench-in-process",
        user=sandbox_user(plan.core.sandbox_user),
    )

    def once() -> float:
        start = time.perf_counter()
        result = plugin.execute(request=request)
        took = time.perf_counter() - start
        assert result.exit_code == 0, result
        return took

    return once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--root", type=Path, help="project root (default: a temporary one)")
    args = parser.parse_args()
    # The console script beside this interpreter: a version manager's shim (pyenv) on PATH
    # would add its own start-up to every run.
    beside = Path(sys.executable).parent / "nanoclaw-runtimes"
    cli = str(beside) if beside.exists() else shutil.which("nanoclaw-runtimes")
    if cli is None:
        print("nanoclaw-runtimes is not installed (pip install -e . -e plugins/container)")
        return 1
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-") as tmp:
        if args.root is None:
            os.chmod(tmp, 0o755)  # reachable by the sandbox user: no staging
        root = (args.root or Path(tmp)).resolve()
        (root / "groups" / GROUP).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **ENV}
        runtimes = nc.Runtimes(root, environ=env)
        command = [cli, "--root", str(root), "run", "--runtime", "container", GROUP, "--", "true"]
        cases: dict[str, Callable[[], float]] = {
            "CLI run -- true": lambda: timed(command, env=env),
            "bare bwrap the runtime starts": bare_run(runtimes, hardened=True),
            "same bwrap without the hardening": bare_run(runtimes, hardened=False),
            "execute hook in process": in_process(runtimes),
        }
        for once in cases.values():
            once()  # warm caches (the probe, page cache)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, once in cases.items():
                times[name].append(once())
    print(f"{args.runs} runs each, milliseconds (median / p90), on {os.cpu_count()} CPUs\n")
    for name, values in times.items():
        median, p90 = summary(values)
        print(f"{name:36} {median:7.1f} / {p90:7.1f}")
    cli_ms = summary(times["CLI run -- true"])[0]
    bare_ms = summary(times["bare bwrap the runtime starts"])[0]
    soft_ms = summary(times["same bwrap without the hardening"])[0]
    print(
        f"\nCLI overhead over the bare bwrap: {cli_ms - bare_ms:.1f} ms ({cli_ms / bare_ms:.1f}x)"
    )
    print(f"hardening: {bare_ms - soft_ms:+.1f} ms")
    python = summary([timed([sys.executable, "-c", "pass"]) for _ in range(10)])
    print(f"for reference, a bare `python3 -c pass`: {python[0]:.1f} ms median")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
