"""What the launcher and the resident helper exchange: requests decode to exactly what was
sent, anything else is refused, and the launcher reads its setting strictly."""

from __future__ import annotations

import pytest

from nanoclaw_runtimes_core.resident import wire
from nanoclaw_runtimes_core.resident.client import idle_ms, is_run


def _frame(**overrides: object) -> bytes:
    fields: dict[str, object] = dict(
        ident="id",
        entry="cli",
        first_path="/venv/bin",
        argv=["nanoclaw-runtimes", "run", "dev", "--", "sh", "-c", "echo 'a b' $X=1"],
        environ={"PATH": "/bin", "EMPTY": "", "WITH_EQUALS": "a=b=c"},
        cwd="/home/u/project with space",
        umask=0o027,
    )
    fields.update(overrides)
    return wire.encode_request(**fields)  # type: ignore[arg-type]


def test_a_request_decodes_to_what_was_sent() -> None:
    frame = _frame()
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    request = wire.Request(frame[4:])
    assert (request.ident, request.entry, request.first_path) == ("id", "cli", "/venv/bin")
    assert request.argv[-1] == "echo 'a b' $X=1" and request.argv[0] == "nanoclaw-runtimes"
    assert request.environ == {"PATH": "/bin", "EMPTY": "", "WITH_EQUALS": "a=b=c"}
    assert (request.cwd, request.umask) == ("/home/u/project with space", 0o027)


def test_an_undecodable_name_survives_the_trip() -> None:
    request = wire.Request(_frame(cwd="/tmp/caf\udce9")[4:])
    assert request.cwd == "/tmp/caf\udce9"  # bytes the file system has, passed as they are


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"something-else/1\0id\0cli\0/\0/\0022\x001\0x",
        b"nanoclaw-resident/1\0id\0shell\0/\0/\0022\x001\0x",  # not an entry of ours
        b"nanoclaw-resident/1\0id\0cli\0/\0/\0022\x009\0x",  # more argv than sent
        b"nanoclaw-resident/1\0id\0cli\0/\0/\0022\x000\0x",  # no argv at all
        b"nanoclaw-resident/1\0id\0cli\0/\0/\0abc\x001\0x",  # not a umask
        b"nanoclaw-resident/1\0id\0cli\0/\0/\0022\x001\0x\0NOEQUALS",
        b"nanoclaw-resident/1\0id\0cli\0/\0/\0022\x001\0x\0=value",
    ],
)
def test_a_malformed_request_is_refused(payload: bytes) -> None:
    with pytest.raises(wire.BadRequest):
        wire.Request(payload)


def test_an_oversized_request_is_refused_before_it_is_sent() -> None:
    with pytest.raises(wire.BadRequest, match="too large"):
        _frame(environ={"BIG": "x" * (wire.MAX_REQUEST + 1)})


def test_the_socket_is_named_for_the_interpreter_and_its_import_path() -> None:
    one = wire.socket_path("/run/x", wire.identity(["/a", "/b"]))
    assert one == wire.socket_path("/run/x", wire.identity(["/a", "/b"]))
    assert one != wire.socket_path("/run/x", wire.identity(["/a", "/c"]))
    assert one.startswith("/run/x/resident-") and one.endswith(".sock")


@pytest.mark.parametrize(("text", "expected"), [("", 0), ("0", 0), (" 600000 ", 600000)])
def test_the_idle_period_is_milliseconds(text: str, expected: int) -> None:
    assert idle_ms(text) == expected


@pytest.mark.parametrize("text", ["soon", "-1", "1.5", "2147483648", "\uff11\uff10"])
def test_anything_else_is_refused_with_the_variable_named(text: str) -> None:
    with pytest.raises(ValueError, match="NANOCLAW_RESIDENT: expected milliseconds"):
        idle_ms(text)


@pytest.mark.parametrize(
    ("entry", "words", "expected"),
    [
        ("cli", ["run", "dev"], True),
        ("cli", ["--root", "/p", "run", "dev", "--", "true"], True),
        ("cli", ["stats"], False),
        ("cli", ["--root", "/p", "doctor"], False),
        ("docker", ["run", "-i", "--rm", "img"], True),
        ("docker", ["stop", "x"], False),
        ("cli", [], False),
    ],
)
def test_only_runs_go_to_the_helper(entry: str, words: list[str], expected: bool) -> None:
    assert is_run(entry, words) is expected
