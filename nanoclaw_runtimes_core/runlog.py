"""Run logs: ``groups/{folder}/logs/container-<ISO time>.log``, as NanoClaw writes them.

A header always (runtime, duration, exit code, truncation flags); the input,
mounts and output only when the run failed or debug is on. Secret values are
replaced by ``[REDACTED]`` everywhere before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from .models import ContainerInput, ExecutionResult, Group, Mount
from .protocol import output_to_dict

REDACTED = "[REDACTED]"


class Redactor:
    """Replaces every known secret value in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def for_input(cls, inp: ContainerInput | None) -> Redactor:
        return cls((inp.secrets or {}).values() if inp is not None else ())

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text


def write_run_log(
    *,
    group: Group,
    runtime: str,
    result: ExecutionResult,
    started: datetime,
    inp: ContainerInput | None,
    command: tuple[str, ...] | None,
    mounts: Iterable[Mount],
    problems: Iterable[str],
    stdout_text: str = "",
    verbose: bool = False,
) -> Path:
    """Write one run's log and return its path."""
    redact = Redactor.for_input(inp)
    group.logs_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S-%f")[:-3] + "Z"
    path = group.logs_dir / f"container-{stamp}.log"
    lines = [
        "=== Container Run Log ===",
        f"Timestamp: {started.astimezone(timezone.utc).isoformat()}",
        f"Group: {group.folder}",
        f"IsMain: {group.is_main}",
        f"Runtime: {runtime}",
        f"Duration: {result.duration_ms}ms",
        f"Exit Code: {result.exit_code}",
        f"Status: {result.status}",
        f"Timed Out: {result.timed_out}",
        f"Stdout Truncated: {result.stdout_truncated}",
        f"Stderr Truncated: {result.stderr_truncated}",
        f"Output Blocks: {len(result.outputs)}",
    ]
    lines += [f"Problem: {p}" for p in problems]
    if result.status == "error" or verbose:
        if result.error_message():
            lines += ["", "=== Error ===", result.error_message() or ""]
        if inp is not None:
            shown = {**json.loads(_input_json(inp))}
            if "secrets" in shown:
                shown["secrets"] = {k: REDACTED for k in shown["secrets"]}
            lines += ["", "=== Input ===", json.dumps(shown, indent=2, ensure_ascii=False)]
        if command is not None:
            lines += ["", "=== Command ===", " ".join(command)]
        lines += ["", "=== Mounts ==="]
        lines += [
            f"{m.host_path} -> {m.container_path}{' (ro)' if m.readonly else ''}" for m in mounts
        ]
        lines += ["", "=== Outputs ==="]
        lines += [json.dumps(output_to_dict(o), ensure_ascii=False) for o in result.outputs]
        lines += ["", "=== Stderr (tail) ===", result.stderr_tail]
        lines += ["", "=== Stdout ===", stdout_text]
    text = redact("\n".join(lines) + "\n")
    for attempt in range(1000):
        candidate = path if attempt == 0 else path.with_name(f"{path.stem}-{attempt}.log")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # two runs within one millisecond
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return candidate
    raise FileExistsError(f"no free log file name beside {path}")


def _input_json(inp: ContainerInput) -> str:
    from .protocol import encode_input

    return encode_input(inp).decode()
