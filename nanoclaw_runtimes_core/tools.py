"""Short commands of host tools: a version query, a capability probe, an engine's management
command (info, stop, ps, rm). Always bounded in time, stdin closed, output captured, with the
fixed host environment unless told otherwise; never a shell."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from .record import Record


class ToolResult(Record):
    """What a short command did. ``returncode`` is None when it could not run or timed out."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        """The most telling line of output, for error messages."""
        if self.problem:
            return self.problem
        lines = [ln.strip() for ln in (self.stderr or self.stdout).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def run_tool(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None
) -> ToolResult:
    """Run ``argv`` to completion within ``timeout_s``; ``env`` defaults to
    :data:`~nanoclaw_runtimes_core.HOST_ENV` (never this process's environment)."""
    if env is None:
        from .process import HOST_ENV

        env = HOST_ENV
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            env=dict(env),
            check=False,
        )
    except FileNotFoundError:
        return ToolResult(returncode=None, problem=f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return ToolResult(
            returncode=None, problem=f"`{' '.join(argv[:3])}` did not answer within {timeout_s:g} s"
        )
    except OSError as exc:
        return ToolResult(returncode=None, problem=f"{argv[0]}: {exc}")
    return ToolResult(
        returncode=proc.returncode,
        stdout=proc.stdout.decode("utf-8", errors="replace"),
        stderr=proc.stderr.decode("utf-8", errors="replace"),
    )
