"""In-process dispatch overhead per ``execute`` with a runtime that does nothing.

Measures what the core adds around a runtime's ``execute`` hook: resolving the
group (folder rules, config.json, settings, mounts), the group lock and run
slot, the ``prepare`` call and the run log. Goal: p50 under 1 ms.

    python bench/core_dispatch.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from nanoclaw_runtimes_core import Runtimes, hookimpl
from nanoclaw_runtimes_core.models import ContainerInput, ContainerOutput, ExecutionResult
from nanoclaw_runtimes_core.plugins import Registry


class NoopRuntime:
    @hookimpl
    def execute(self, request):  # type: ignore[no-untyped-def]
        out = ContainerOutput(status="success", result="ok")
        request.sink.on_output(out)
        return ExecutionResult(exit_code=0, outputs=(out,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "groups" / "dev").mkdir(parents=True)
        (root / "groups" / "dev" / "config.json").write_text(
            '{"containerConfig": {"runtime": "noop", "timeout": 60000}}'
        )
        registry = Registry()
        registry.register("noop", NoopRuntime(), distribution="bench")
        runtimes = Runtimes(
            root, registry=registry, environ={"NANOCLAW_MOUNT_ALLOWLIST": str(root / "none.json")}
        )
        inp = ContainerInput(prompt="hi", group_folder="dev", chat_jid="x", is_main=False)
        for _ in range(50):  # warm caches and imports
            runtimes.execute("dev", input=inp)
        samples = []
        for _ in range(args.runs):
            started = time.perf_counter()
            runtimes.execute("dev", input=inp)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
        print(f"dispatch overhead per execute over {args.runs} runs (no-op runtime):")
        print(
            f"  p50 {p(0.50):.3f} ms   p90 {p(0.90):.3f} ms   p99 {p(0.99):.3f} ms   "
            f"mean {statistics.fmean(samples):.3f} ms"
        )
        print(f"  goal p50 < 1 ms: {'met' if p(0.50) < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
