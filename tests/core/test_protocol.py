"""The marker decoder against the noise a VM console and a real agent produce."""

from __future__ import annotations

import json

import pytest

from nanoclaw_runtimes_core.models import ContainerInput, ContainerOutput
from nanoclaw_runtimes_core.protocol import (
    OUTPUT_END,
    OUTPUT_START,
    InputError,
    MarkerDecoder,
    OutputEvent,
    ProblemEvent,
    StatusEvent,
    TextEvent,
    decode_input,
    encode_input,
    encode_output,
)


def feed_all(decoder: MarkerDecoder, chunks: list[bytes]) -> list[object]:
    events: list[object] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def outputs(events: list[object]) -> list[ContainerOutput]:
    return [e.output for e in events if isinstance(e, OutputEvent)]


BLOCK = (
    f"{OUTPUT_START}\n"
    + json.dumps({"status": "success", "result": "hi", "newSessionId": "s1"})
    + f"\n{OUTPUT_END}\n"
).encode()


def test_one_block_surrounded_by_text() -> None:
    events = feed_all(MarkerDecoder(), [b"booting\n" + BLOCK + b"bye\n"])
    assert outputs(events) == [ContainerOutput(status="success", result="hi", new_session_id="s1")]
    assert [e.data for e in events if isinstance(e, TextEvent)] == [b"booting\n", b"bye\n"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13])
def test_markers_split_across_every_read_size(size: int) -> None:
    data = BLOCK * 3
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert [o.result for o in outputs(feed_all(MarkerDecoder(), chunks))] == ["hi"] * 3


def test_crlf_and_terminal_control_codes_around_and_inside_markers() -> None:
    noisy = (
        b"\x1b[?25l\x1b]0;title\x07---NANOCLAW_\x1b[0mOUTPUT_START---\r\r\n"
        b'\x1b[32m{"status": "error", "result": null, "error": "boom"}\x1b[0m\r\n'
        b"  ---NANOCLAW_OUTPUT_END---  \r\n"
    )
    assert outputs(feed_all(MarkerDecoder(), [noisy])) == [
        ContainerOutput(status="error", result=None, error="boom")
    ]


def test_non_utf8_bytes_do_not_break_parsing() -> None:
    data = b"\xff\xfe garbage\n" + BLOCK.replace(b'"hi"', b'"h\xc3\xa9"') + b"\x80\n"
    events = feed_all(MarkerDecoder(), [data])
    assert [o.result for o in outputs(events)] == ["hé"]


def test_bad_json_is_reported_and_the_next_block_still_parses() -> None:
    bad = f"{OUTPUT_START}\n{{not json\n{OUTPUT_END}\n".encode()
    events = feed_all(MarkerDecoder(), [bad + BLOCK])
    problems = [e.message for e in events if isinstance(e, ProblemEvent)]
    assert len(problems) == 1 and "not valid JSON" in problems[0]
    assert [o.result for o in outputs(events)] == ["hi"]


def test_block_with_wrong_shape_is_a_problem() -> None:
    bad = f'{OUTPUT_START}\n{{"status": "maybe"}}\n{OUTPUT_END}\n'.encode()
    events = feed_all(MarkerDecoder(), [bad])
    assert not outputs(events)
    assert any("status" in e.message for e in events if isinstance(e, ProblemEvent))


def test_oversized_block_is_dropped_with_a_problem() -> None:
    big = f'{OUTPUT_START}\n{{"status":"success","result":"{"x" * 5000}"}}\n{OUTPUT_END}\n'
    events = feed_all(MarkerDecoder(max_block=1000), [big.encode() + BLOCK])
    assert [o.result for o in outputs(events)] == ["hi"]
    assert any("larger than" in e.message for e in events if isinstance(e, ProblemEvent))


def test_unterminated_block_at_end_is_reported() -> None:
    events = feed_all(MarkerDecoder(), [f"{OUTPUT_START}\n{{}}".encode()])
    assert any("ended inside a block" in e.message for e in events if isinstance(e, ProblemEvent))


def test_status_marker_lines_become_status_events() -> None:
    decoder = MarkerDecoder(status_marker="@@STATUS:")
    events = feed_all(decoder, [b"echo @@STATUS:$?\n\x1b[0m@@STATUS:", b"7\r\n"])
    assert [e.code for e in events if isinstance(e, StatusEvent)] == [7]


def test_literal_marker_inside_other_text_is_not_a_marker() -> None:
    # A console echo of a script line that mentions the marker is not a block start.
    data = f"printf '%s\\n' '{OUTPUT_START}'\n".encode()
    events = feed_all(MarkerDecoder(), [data])
    assert not outputs(events) and not any(isinstance(e, ProblemEvent) for e in events)


def test_input_round_trip_and_camel_case() -> None:
    inp = ContainerInput(
        prompt="hi",
        group_folder="dev",
        chat_jid="j@s",
        is_main=False,
        session_id="s",
        secrets={"API_KEY": "k"},
    )
    raw = encode_input(inp)
    assert json.loads(raw)["groupFolder"] == "dev"
    assert decode_input(raw) == inp


def test_input_errors_name_each_field() -> None:
    with pytest.raises(InputError) as info:
        decode_input(b'{"prompt": 3, "chatJid": "x", "isMain": "yes", "extra": 1}')
    text = str(info.value)
    for expected in (
        "prompt: expected str",
        "groupFolder: required",
        "isMain: expected bool",
        "extra: unknown",
    ):
        assert expected in text


def test_input_invalid_json_gives_line_and_column() -> None:
    with pytest.raises(InputError, match=r"line 2, column \d+"):
        decode_input(b'{\n "prompt": }')


def test_encode_output_round_trips_through_decoder() -> None:
    out = ContainerOutput(status="success", result="multi\nline", new_session_id="n")
    assert outputs(feed_all(MarkerDecoder(), [encode_output(out).encode()])) == [out]
