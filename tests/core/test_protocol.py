"""The stdin/stdout protocol: ContainerInput passthrough and NanoClaw's marker semantics."""

from __future__ import annotations

import json
import random

import pytest

from nanoclaw_runtimes_core.protocol import (
    OUTPUT_END,
    OUTPUT_START,
    InputError,
    MarkerDecoder,
    OutputEvent,
    ProblemEvent,
    decode_input,
    encode_input,
)


def _block(obj: object) -> bytes:
    return f"{OUTPUT_START}\n{json.dumps(obj)}\n{OUTPUT_END}\n".encode()


STREAM = (
    b"junk before\n"
    + _block({"status": "success", "result": "one \u00e9"})
    + b"between\n"
    + f"{OUTPUT_START}\n{{not json\n{OUTPUT_END}\n".encode()
    + f"{OUTPUT_START} x {OUTPUT_START}\n".encode()
    + _block({"status": "success", "result": None, "newSessionId": "s-1"})[len(OUTPUT_START) :]
    + _block({"status": "error", "result": None, "error": "bad"})
    + b"tail"
)


def _events(chunks: list[bytes]) -> list[object]:
    decoder = MarkerDecoder()
    events: list[object] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def _summary(events: list[object]) -> list[object]:
    return [
        (e.output.status, e.output.result, e.output.new_session_id)
        if isinstance(e, OutputEvent)
        else ("problem", e.message.split(" (")[0] if isinstance(e, ProblemEvent) else e)
        for e in events
    ]


EXPECTED = [
    ("success", "one \u00e9", None),
    ("problem", "output block is not valid JSON"),
    # NanoClaw takes the first END after the first START: the nested START is payload.
    ("problem", "output block is not valid JSON"),
    ("error", None, None),
]


def test_blocks_in_one_read() -> None:
    assert _summary(_events([STREAM])) == EXPECTED


def test_blocks_across_every_split_point() -> None:
    for at in range(len(STREAM) + 1):
        assert _summary(_events([STREAM[:at], STREAM[at:]])) == EXPECTED, at


def test_blocks_across_random_chunks() -> None:
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 30)))
        chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert _summary(_events(chunks)) == EXPECTED


def test_a_stream_ending_inside_a_block_and_an_oversized_block() -> None:
    assert _summary(_events([f"{OUTPUT_START}\n{{".encode()])) == [
        ("problem", "output ended inside a block")
    ]
    decoder = MarkerDecoder(max_block=100)
    events = decoder.feed(f"{OUTPUT_START}\n".encode() + b"x" * 500)
    events += decoder.feed(
        f"\n{OUTPUT_END}\n".encode() + _block({"status": "success", "result": "ok"})
    )
    assert _summary(events) == [
        ("problem", "an output block larger than 100 bytes was dropped"),
        ("success", "ok", None),
    ]


def test_unknown_input_fields_are_kept_and_passed_on() -> None:
    raw = {
        "prompt": "hi",
        "groupFolder": "dev",
        "chatJid": "c@g.us",
        "isMain": False,
        "script": "echo task",
        "futureField": {"nested": [1, 2]},
        "secrets": {"K": "sk-hidden-value"},
    }
    inp = decode_input(json.dumps(raw))
    assert inp.extra == {"script": "echo task", "futureField": {"nested": [1, 2]}}
    assert json.loads(encode_input(inp)) == raw
    assert "sk-hidden-value" not in repr(inp)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "expected a JSON object"),
        ("{", "invalid JSON"),
        ('{"prompt": "x"}', "groupFolder: required field missing"),
        (
            '{"prompt": 1, "groupFolder": "d", "chatJid": "c", "isMain": "no"}',
            "isMain: expected bool",
        ),
        (
            '{"prompt": "", "groupFolder": "d", "chatJid": "c", "isMain": true, "secrets": [1]}',
            "secrets",
        ),
    ],
)
def test_bad_input_says_which_field(raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_input(raw)
