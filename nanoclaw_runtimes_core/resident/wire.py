"""What the launcher and the resident helper say to each other, and where they meet.

A request is one frame: a 4-byte big-endian length, then NUL-separated fields (no argv
word, variable or path can hold a NUL): magic, identity, entry, the caller's ``sys.path[0]``,
working folder, umask, argc, argv, then the environment as ``NAME=value``. Then short ASCII
lines:

- worker → launcher: ``A<pid>`` (ready to run it), ``X<status>`` (it ended); the helper
  says ``K<signal>`` for a worker killed by a signal, ``R`` for a request it will not run
  (the launcher runs it itself);
- launcher → worker: ``G`` after ``A``, carrying the launcher's stdin, stdout and stderr as
  ``SCM_RIGHTS`` (only then does the run start), then ``S<signal>`` for each signal the
  launcher receives.
"""

from __future__ import annotations

import os
import sys
import zlib

TYPE_CHECKING = False  # not typing's: the launcher imports this module
if TYPE_CHECKING:
    from _socket import socket

ENV = "NANOCLAW_RESIDENT"
"""Milliseconds the helper stays after its last run; unset or 0: no helper."""
MAGIC = "nanoclaw-resident/1"
MAX_REQUEST = 8 * 2**20
ENTRIES = ("cli", "docker")
"""The commands a helper runs: ``nanoclaw-runtimes`` and ``nanoclaw-runtimes-docker``."""


class BadRequest(ValueError):
    """A request frame that is not one of ours."""


def identity(import_path: list[str]) -> str:
    """This interpreter and what it imports from: a helper serves only callers that match.
    The caller leaves out ``sys.path[0]`` (its script's folder, or the current one), which a
    worker takes from its caller."""
    return "\n".join([f"uid={os.getuid()}", sys.executable, sys.version, *import_path])


def socket_path(folder: str, ident: str) -> str:
    return os.path.join(folder, f"resident-{zlib.crc32(ident.encode()):08x}.sock")


def encode_request(
    *,
    ident: str,
    entry: str,
    first_path: str,
    argv: list[str],
    environ: dict[str, str] | os._Environ[str],
    cwd: str,
    umask: int,
) -> bytes:
    fields = [MAGIC, ident, entry, first_path, cwd, f"{umask:o}", str(len(argv)), *argv]
    fields += [f"{k}={v}" for k, v in environ.items()]
    payload = b"\0".join(os.fsencode(f) for f in fields)
    if len(payload) > MAX_REQUEST:
        raise BadRequest("the command line and environment are too large for the helper")
    return len(payload).to_bytes(4, "big") + payload


class Request:
    """A decoded request (see :func:`encode_request`)."""

    def __init__(self, payload: bytes) -> None:
        fields = [os.fsdecode(f) for f in payload.split(b"\0")]
        if len(fields) < 7 or fields[0] != MAGIC:
            raise BadRequest("not a nanoclaw-resident request")
        self.ident, self.entry, self.first_path, self.cwd = fields[1:5]
        if self.entry not in ENTRIES:
            raise BadRequest(f"unknown entry {self.entry!r}")
        try:
            self.umask = int(fields[5], 8)
            argc = int(fields[6])
        except ValueError:
            raise BadRequest("a malformed umask or argument count") from None
        if not 1 <= argc <= len(fields) - 7:
            raise BadRequest("a malformed argument count")
        self.argv = fields[7 : 7 + argc]
        self.environ: dict[str, str] = {}
        for item in fields[7 + argc :]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise BadRequest("a malformed environment entry")
            self.environ[name] = value


def send_line(sock: socket, line: str) -> None:
    sock.sendall(line.encode() + b"\n")


class LineReader:
    """Reads ASCII lines from a socket; ``None`` at the end of the stream."""

    def __init__(self, sock: socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> str | None:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(256)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("ascii", "replace")
