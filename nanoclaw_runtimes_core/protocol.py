"""The NanoClaw stdin/stdout protocol: ContainerInput JSON in, marker blocks out.

Blocks are found the way NanoClaw's own host finds them: the first
``---NANOCLAW_OUTPUT_START---``, then the first ``---NANOCLAW_OUTPUT_END---``
after it, the text between trimmed and parsed as JSON; anything outside blocks
is not a block. :class:`MarkerDecoder` does this incrementally over a byte
stream, across reads of any size, with bounded memory.
"""

from __future__ import annotations

import json
from typing import Any

from .models import ContainerInput, ContainerOutput
from .record import Record

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"
MAX_BLOCK = 64 * 2**20
MAX_INPUT = 64 * 2**20

_START = OUTPUT_START.encode()
_END = OUTPUT_END.encode()

_FIELDS = {
    "prompt": "prompt",
    "session_id": "sessionId",
    "group_folder": "groupFolder",
    "chat_jid": "chatJid",
    "is_main": "isMain",
    "is_scheduled_task": "isScheduledTask",
    "assistant_name": "assistantName",
}


def encode_input(inp: ContainerInput) -> bytes:
    """The ContainerInput as the compact camelCase JSON a NanoClaw agent reads on stdin, in
    NanoClaw's field order, fields the core does not know included as they came."""
    data: dict[str, Any] = {}
    for attr, key in _FIELDS.items():
        value = getattr(inp, attr)
        if value is not None:
            data[key] = value
    for key, value in inp.extra.items():
        data.setdefault(key, value)
    if inp.secrets is not None:
        data["secrets"] = dict(inp.secrets)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class InputError(ValueError):
    """A ContainerInput that does not follow the contract."""


def decode_input(data: bytes | str) -> ContainerInput:
    """Parse and check a ContainerInput; raises :class:`InputError` saying which field is wrong.

    Only the fields the core uses are checked; any other field is kept and
    passed on to the agent unchanged (NanoClaw adds fields over time).
    """
    if len(data) > MAX_INPUT:
        raise InputError(f"stdin: the ContainerInput is {len(data)} bytes; at most {MAX_INPUT}")
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"stdin: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"stdin: invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InputError("stdin: expected a JSON object (ContainerInput)")
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    required = {"prompt": str, "groupFolder": str, "chatJid": str, "isMain": bool}
    optional = {"sessionId": str, "isScheduledTask": bool, "assistantName": str}
    reverse = {v: k for k, v in _FIELDS.items()}
    for key, typ in {**required, **optional}.items():
        value = obj.get(key)
        if value is None:
            if key in required:
                problems.append(f"stdin: {key}: required field missing")
            continue
        if type(value) is not typ:
            problems.append(f"stdin: {key}: expected {typ.__name__}, got {json.dumps(value)[:40]}")
            continue
        kwargs[reverse[key]] = value
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
    known = set(_FIELDS.values()) | {"secrets"}
    kwargs["extra"] = {k: v for k, v in obj.items() if k not in known}
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


class OutputEvent(Record, kw_only=False):
    """A complete, valid output block."""

    output: ContainerOutput


class ProblemEvent(Record, kw_only=False):
    """Something in the stream that could not be used: a block with bad JSON, a block larger
    than the cap, a stream that ended inside a block."""

    message: str


Event = OutputEvent | ProblemEvent


class MarkerDecoder:
    """Streaming decoder: ``feed(chunk)`` and ``close()`` return the events found so far.

    Outside a block only a few bytes are kept (a marker split across reads);
    inside one, at most ``max_block`` bytes: a larger block is dropped and
    reported.
    """

    def __init__(self, *, max_block: int = MAX_BLOCK) -> None:
        self._max_block = max_block
        self._buffer = bytearray()
        self._inside = False
        self._overflow = False

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        self._buffer += chunk
        while True:
            if not self._inside:
                at = self._buffer.find(_START)
                if at < 0:
                    # Keep only what could be the beginning of a split marker.
                    del self._buffer[: max(0, len(self._buffer) - len(_START) + 1)]
                    return events
                del self._buffer[: at + len(_START)]
                self._inside, self._overflow = True, False
            at = self._buffer.find(_END)
            if at < 0:
                if len(self._buffer) > self._max_block:
                    # Too large to keep: drop what we have, remember to report the block.
                    keep = len(_END) - 1
                    del self._buffer[:-keep]
                    self._overflow = True
                return events
            payload = bytes(self._buffer[:at])
            del self._buffer[: at + len(_END)]
            self._inside = False
            events.append(self._block(payload))

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._inside:
            events.append(
                ProblemEvent(f"output ended inside a block (no {OUTPUT_END}); block lost")
            )
        self._buffer.clear()
        self._inside = False
        return events

    def _block(self, payload: bytes) -> Event:
        if self._overflow:
            return ProblemEvent(f"an output block larger than {self._max_block} bytes was dropped")
        text = payload.decode("utf-8", errors="replace").strip()
        try:
            return OutputEvent(output_from_obj(json.loads(text)))
        except (json.JSONDecodeError, RecursionError) as exc:
            detail = getattr(exc, "msg", str(exc))
            return ProblemEvent(f"output block is not valid JSON ({detail}): {text[:200]!r}")
        except ValueError as exc:
            return ProblemEvent(f"output block is not a ContainerOutput ({exc}): {text[:200]!r}")
