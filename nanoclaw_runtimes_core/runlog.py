"""Run logs: ``groups/{folder}/logs/container-<time>.log`` in NanoClaw's own format.

A header always; the input (verbose) or its summary, the arguments, mounts,
stderr and stdout when the run failed or the log level is debug, as NanoClaw
writes them. Secret values are replaced by ``[REDACTED]`` before anything is
written. The logs folder lies in the group's read-write workspace: it is opened
without following links, a planted link or file is moved aside, and a log never
overwrites an existing file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from .models import ContainerInput, ExecutionResult, Group, Mount
from .redact import REDACTED, Redactor
from .safefs import Repair, SafeDir


def _iso(when_ns: int) -> str:
    """``2026-01-02T03:04:05.678Z`` (UTC, milliseconds) of a ``time.time_ns()`` value; the
    ``time`` module, not ``datetime``, which a run does not otherwise import."""
    seconds, rest = divmod(when_ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 10**6:03d}Z"


def _stamp(when_ns: int) -> str:
    return _iso(when_ns).replace(":", "-").replace(".", "-")


def render(
    *,
    group: Group,
    runtime: str,
    run_name: str,
    result: ExecutionResult,
    inp: ContainerInput | None,
    args: tuple[str, ...],
    mounts: Iterable[Mount],
    problems: Iterable[str],
    verbose: bool,
    now: int,
) -> str:
    """The log text (not yet redacted); ``now`` is ``time.time_ns()``."""
    iso = _iso(now)
    if result.timed_out:
        lines = [
            "=== Container Run Log (TIMEOUT) ===",
            f"Timestamp: {iso}",
            f"Group: {group.folder}",
            f"Container: {run_name}",
            f"Duration: {result.duration_ms}ms",
            f"Exit Code: {result.exit_code}",
            f"Had Streaming Output: {'true' if result.output_count else 'false'}",
        ]
    else:
        lines = [
            "=== Container Run Log ===",
            f"Timestamp: {iso}",
            f"Group: {group.folder}",
            f"IsMain: {'true' if group.is_main else 'false'}",
            f"Duration: {result.duration_ms}ms",
            f"Exit Code: {result.exit_code}",
            f"Stdout Truncated: {'true' if result.stdout_truncated else 'false'}",
            f"Stderr Truncated: {'true' if result.stderr_truncated else 'false'}",
            "",
        ]
        failed = result.status == "error"
        mount_list = list(mounts)
        if verbose and inp is not None:
            shown = json.loads(_input_json(inp))
            if "secrets" in shown:
                shown["secrets"] = {k: REDACTED for k in shown["secrets"]}
            lines += ["=== Input ===", json.dumps(shown, indent=2, ensure_ascii=False), ""]
        elif inp is not None or not (verbose or failed):
            prompt = inp.prompt if inp is not None else ""
            session = (inp.session_id if inp is not None else None) or "new"
            lines += [
                "=== Input Summary ===",
                f"Prompt length: {len(prompt)} chars",
                f"Session ID: {session}",
                "",
            ]
        if verbose or failed:
            lines += ["=== Container Args ===", " ".join(args), ""]
            lines += ["=== Mounts ==="]
            lines += [
                f"{m.host_path} -> {m.container_path}{' (ro)' if m.readonly else ''}"
                for m in mount_list
            ]
            lines += [""]
            stderr_title = (
                "=== Stderr (TRUNCATED) ===" if result.stderr_truncated else "=== Stderr ==="
            )
            stdout_title = (
                "=== Stdout (TRUNCATED) ===" if result.stdout_truncated else "=== Stdout ==="
            )
            lines += [stderr_title, result.stderr.decode("utf-8", errors="replace"), ""]
            lines += [stdout_title, result.stdout.decode("utf-8", errors="replace")]
        else:
            lines += ["=== Mounts ==="]
            lines += [f"{m.container_path}{' (ro)' if m.readonly else ''}" for m in mount_list]
            lines += [""]
    extra = [
        f"Runtime: {runtime}",
        f"Status: {result.status}",
        f"Output Blocks: {result.output_count}",
    ]
    if result.error:
        extra.append(f"Error: {result.error}")
    extra += [f"Problem: {p}" for p in problems]
    lines += ["", "=== nanoclaw-runtimes ===", *extra]
    return "\n".join(lines)


def write_run_log(
    *,
    group: Group,
    runtime: str,
    run_name: str,
    result: ExecutionResult,
    inp: ContainerInput | None,
    args: tuple[str, ...],
    mounts: Iterable[Mount],
    problems: Iterable[str],
    verbose: bool,
    redact: Redactor,
    repairs: list[Repair],
    prefix: str = "container",
) -> str:
    """Write one run's log into the group's ``logs/`` (``<prefix>-<time>.log``) and return its
    path as text."""
    now = time.time_ns()
    text = redact(
        render(
            group=group,
            runtime=runtime,
            run_name=run_name,
            result=result,
            inp=inp,
            args=args,
            mounts=mounts,
            problems=problems,
            verbose=verbose,
            now=now,
        )
    )
    with SafeDir.open(group.path) as folder, folder.child("logs", repairs=repairs) as logs:
        base = f"{prefix}-{_stamp(now)}"
        for attempt in range(1000):
            name = f"{base}.log" if attempt == 0 else f"{base}-{attempt}.log"
            try:
                return str(logs.write_new(name, text.encode()))
            except FileExistsError:
                continue
    raise FileExistsError(f"no free log file name in {group.logs_dir}")


def _input_json(inp: ContainerInput) -> str:
    from .protocol import encode_input

    return encode_input(inp).decode()
