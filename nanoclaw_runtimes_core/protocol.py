"""The NanoClaw stdin/stdout protocol: ContainerInput JSON in, marker blocks out.

:class:`MarkerDecoder` turns a byte stream into events as it arrives. It is
built for noisy sources such as a VM's serial console: markers split across
reads, CRLF line ends, terminal control codes around or inside lines, bytes
that are not UTF-8, and blocks whose JSON does not parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from attrs import define

from .models import ContainerInput, ContainerOutput

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"

# CSI and OSC sequences, other two-byte escapes, and C0 controls except tab.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI, e.g. colours and cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC, e.g. window titles
    r"|\x1b[@-Z\\-_]"  # other escapes
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)

_INPUT_KEYS = {
    "prompt": "prompt",
    "session_id": "sessionId",
    "group_folder": "groupFolder",
    "chat_jid": "chatJid",
    "is_main": "isMain",
    "is_scheduled_task": "isScheduledTask",
    "assistant_name": "assistantName",
    "secrets": "secrets",
}


def strip_control(text: str) -> str:
    """Remove terminal control sequences and control characters (tabs are kept)."""
    return _CONTROL.sub("", text)


def encode_input(inp: ContainerInput) -> bytes:
    """The ContainerInput as the camelCase JSON a NanoClaw agent reads on stdin."""
    data: dict[str, Any] = {}
    for attr, key in _INPUT_KEYS.items():
        value = getattr(inp, attr)
        if value is not None:
            data[key] = dict(value) if isinstance(value, Mapping) else value
    return json.dumps(data, ensure_ascii=False).encode()


class InputError(ValueError):
    """A ContainerInput that does not follow the contract."""


def decode_input(data: bytes | str) -> ContainerInput:
    """Parse and check a ContainerInput; raises :class:`InputError` saying which field is wrong."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"stdin: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    if not isinstance(obj, dict):
        raise InputError("stdin: expected a JSON object (ContainerInput)")
    problems: list[str] = []
    reverse = {v: k for k, v in _INPUT_KEYS.items()}
    unknown = sorted(set(obj) - set(reverse))
    problems += [f"stdin: {key}: unknown ContainerInput field" for key in unknown]
    kwargs: dict[str, Any] = {}
    required = {"prompt": str, "groupFolder": str, "chatJid": str, "isMain": bool}
    optional = {"sessionId": str, "isScheduledTask": bool, "assistantName": str}
    for key, typ in {**required, **optional}.items():
        if key not in obj or (obj[key] is None and key in optional):
            if key in required:
                problems.append(f"stdin: {key}: required field missing")
            continue
        if not isinstance(obj[key], typ):
            problems.append(f"stdin: {key}: expected {typ.__name__}, got {obj[key]!r:.40}")
        kwargs[reverse[key]] = obj[key]
    secrets = obj.get("secrets")
    if secrets is not None:
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
        ):
            problems.append("stdin: secrets: expected an object of string values")
        else:
            kwargs["secrets"] = secrets
    if problems:
        raise InputError("\n".join(problems))
    return ContainerInput(**kwargs)


def output_to_dict(out: ContainerOutput) -> dict[str, Any]:
    """The ContainerOutput as NanoClaw's JSON object (optional fields left out when unset)."""
    data: dict[str, Any] = {"status": out.status, "result": out.result}
    if out.new_session_id is not None:
        data["newSessionId"] = out.new_session_id
    if out.error is not None:
        data["error"] = out.error
    return data


def encode_output(out: ContainerOutput) -> str:
    """A whole output block, markers included, ending with a newline."""
    payload = json.dumps(output_to_dict(out), ensure_ascii=False)
    return f"{OUTPUT_START}\n{payload}\n{OUTPUT_END}\n"


def output_from_obj(obj: Any) -> ContainerOutput:
    """Check a parsed block against ContainerOutput; raises ValueError naming the field."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    status = obj.get("status")
    if status not in ("success", "error"):
        raise ValueError(f'status: expected "success" or "error", got {status!r}')
    result = obj.get("result")
    if result is not None and not isinstance(result, str):
        raise ValueError(f"result: expected a string or null, got {type(result).__name__}")
    for key in ("newSessionId", "error"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise ValueError(f"{key}: expected a string")
    return ContainerOutput(
        status=status, result=result, new_session_id=obj.get("newSessionId"), error=obj.get("error")
    )


# --------------------------------------------------------------------------- events


@define(frozen=True)
class OutputEvent:
    """A complete, valid output block."""

    output: ContainerOutput


@define(frozen=True)
class TextEvent:
    """A line of stdout outside any block (with its line end)."""

    data: bytes


@define(frozen=True)
class ProblemEvent:
    """Something in the stream that could not be used, e.g. a block with bad JSON."""

    message: str


@define(frozen=True)
class StatusEvent:
    """An exit status reported inside the stream by engines that hide the real one."""

    code: int


Event = OutputEvent | TextEvent | ProblemEvent | StatusEvent


class MarkerDecoder:
    """Streaming decoder: ``feed(chunk)`` and ``close()`` return the events found so far.

    Lines are matched after control codes and surrounding white space are
    stripped, so ``\\x1b[0m---NANOCLAW_OUTPUT_START---\\r`` is a marker. A block
    larger than ``max_block`` bytes is dropped with a ProblemEvent.
    ``status_marker``: a line ``<status_marker><int>`` becomes a StatusEvent.
    """

    def __init__(self, *, status_marker: str | None = None, max_block: int = 10 * 2**20) -> None:
        self._status_marker = status_marker
        self._max_block = max_block
        self._pending = b""
        self._block: list[str] | None = None
        self._block_size = 0
        self._block_overflow = False

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        for raw in lines:
            self._line(raw + b"\n", events)
        # A partial line may grow without bound on a console with no newlines.
        if len(self._pending) > self._max_block:
            self._line(self._pending, events)
            self._pending = b""
        return events

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._pending:
            self._line(self._pending, events)
            self._pending = b""
        if self._block is not None:
            events.append(ProblemEvent(f"output ended inside a block (no {OUTPUT_END})"))
            self._block = None
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        text = strip_control(raw.decode("utf-8", errors="replace")).strip()
        if self._block is None:
            if text == OUTPUT_START:
                self._block, self._block_size, self._block_overflow = [], 0, False
            elif self._status_marker and text.startswith(self._status_marker):
                code = text[len(self._status_marker) :].strip()
                if code.lstrip("-").isdigit():
                    events.append(StatusEvent(int(code)))
                else:
                    events.append(ProblemEvent(f"unreadable exit status {code!r}"))
            else:
                events.append(TextEvent(raw))
            return
        if text == OUTPUT_END:
            events.append(self._finish_block())
        elif text == OUTPUT_START:
            events.append(ProblemEvent(f"{OUTPUT_START} inside a block; earlier block dropped"))
            self._block, self._block_size, self._block_overflow = [], 0, False
        else:
            self._block_size += len(raw)
            if self._block_size > self._max_block:
                self._block_overflow = True
            elif text:
                self._block.append(text)

    def _finish_block(self) -> Event:
        lines, self._block = self._block or [], None
        if self._block_overflow:
            return ProblemEvent(f"output block larger than {self._max_block} bytes dropped")
        payload = "\n".join(lines)
        try:
            return OutputEvent(output_from_obj(json.loads(payload)))
        except json.JSONDecodeError as exc:
            return ProblemEvent(f"output block is not valid JSON ({exc.msg}): {payload[:200]!r}")
        except ValueError as exc:
            return ProblemEvent(f"output block is not a ContainerOutput ({exc}): {payload[:200]!r}")
