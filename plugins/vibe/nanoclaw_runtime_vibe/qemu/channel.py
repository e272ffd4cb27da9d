"""The host's side of the guest channels: four virtio-serial ports, each a unix socket.

``ctl``     text lines both ways. Host to guest: ``H <nonce>`` (a new session; the guest
            aborts anything of an earlier one and answers ``h <nonce> <uptime ms>``), a run
            request (``R <token> <stdin bytes> <keep-warm ms>``, then ``a`` argv words, ``e``
            environment entries, ``w`` working folder, ``n`` host name, ``c`` the not-found
            message, ``m <tag> ro|rw <path>`` shares, ``f <path> <content>`` read-only files,
            ``d <path>`` empty read-only folders, each value hex; ``g`` starts it), ``K``
            (kill the run) and ``Q`` (power off). Guest to host: ``s <pid>`` (started),
            ``W``/``E`` (a warning or an error, hex), ``x <status> <stdout bytes> <stderr
            bytes>`` (ended).
``stdin``   the run's 16-byte random token, then exactly the announced stdin bytes.
``stdout``, ``stderr``  the token, then the agent's bytes.

The token makes every data stream start afresh: whatever a host that died mid-run left in
a port comes before it and is dropped, and no agent can forge it. The byte counts in ``x``
say where each stream ends, so nothing is cut short and nothing is taken for output that
is not. Sockets are blocking with back-pressure: a host that reads slowly slows the agent
down, nothing is lost.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CTL, STDIN, STDOUT, STDERR = "ctl.sock", "in.sock", "out.sock", "err.sock"
PORTS = (("nanoclaw.ctl", CTL), ("nanoclaw.stdin", STDIN), ("nanoclaw.stdout", STDOUT),
         ("nanoclaw.stderr", STDERR))  # fmt: skip
TOKEN_LEN = 16
CHUNK = 256 * 1024


class ChannelClosed(Exception):
    """The VM's side went away (QEMU exited or the guest powered off)."""


def socket_path(folder_fd: int, name: str) -> str:
    """A short path to a socket in the VM's folder (unix socket paths are limited to 108
    bytes; the folder's own path may be longer)."""
    return f"/proc/self/fd/{folder_fd}/{name}"


def connect(folder_fd: int, name: str, timeout: float) -> socket.socket:
    """Connect to one of QEMU's listening sockets; OSError when nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path(folder_fd, name))
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def hexed(value: str | bytes) -> str:
    """A value as the guest reads it: hex of its UTF-8 bytes."""
    return (value.encode() if isinstance(value, str) else value).hex()


class Channel:
    """A session with a running guest: the four ports connected, lines read in a thread."""

    def __init__(self, folder_fd: int, *, connect_timeout: float = 2.0) -> None:
        self.socks: dict[str, socket.socket] = {}
        try:
            for _name, sock_name in PORTS:
                self.socks[sock_name] = connect(folder_fd, sock_name, connect_timeout)
        except BaseException:
            self.close()
            raise
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read_lines, daemon=True).start()

    # ----------------------------------------------------------------- ctl

    def _read_lines(self) -> None:
        sock = self.socks[CTL]
        pending = b""
        try:
            while chunk := sock.recv(65536):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    self.lines.put(line.decode("ascii", errors="replace"))
        except OSError:
            pass
        self.lines.put(None)

    def send(self, lines: Iterable[str]) -> None:
        """Send control lines; ChannelClosed when the guest's side is gone."""
        data = ("".join(f"{line}\n" for line in lines)).encode()
        try:
            with self._send_lock:
                self.socks[CTL].sendall(data)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def next_line(self, timeout: float | None) -> str | None:
        """The next line from the guest, None when the channel closed; TimeoutError when none
        came in ``timeout`` seconds."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if line is None:
            self.lines.put(None)  # stays closed for every later reader
        return line

    def handshake(self, timeout: float, *, alive: Callable[[], bool] = lambda: True) -> int:
        """Start a session: ``H`` until the guest answers with our nonce (earlier lines are an
        earlier session's). Returns the guest's uptime in ms. TimeoutError when it does not
        answer in ``timeout`` seconds; ChannelClosed when it goes away."""
        nonce = secrets.token_hex(8)
        deadline = time.monotonic() + timeout
        resend = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError
            if not alive():
                raise ChannelClosed("the VM stopped")
            if now >= resend:
                # The leading newline ends whatever half line a dead host left behind.
                self.send(["", f"H {nonce}"])
                resend = now + 0.5
            try:
                line = self.next_line(min(0.1, max(0.0, deadline - now)))
            except TimeoutError:
                continue
            if line is None:
                raise ChannelClosed("the VM closed its control channel")
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "h" and parts[1] == nonce:
                return int(parts[2])

    # ----------------------------------------------------------------- data

    def send_stdin(self, token: bytes, data: bytes) -> threading.Thread:
        """Write the token and ``data`` to the stdin port in a thread (the guest takes it as
        fast as the agent reads)."""

        def feed() -> None:
            with contextlib.suppress(OSError):
                sock = self.socks[STDIN]
                sock.sendall(token)
                view = memoryview(data)
                for i in range(0, len(view), CHUNK):
                    sock.sendall(view[i : i + CHUNK])

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        return thread

    def read_stream(self, name: str, token: bytes, handle: Callable[[bytes], None]) -> StreamReader:
        """Start reading the stdout or stderr port: bytes before ``token`` are dropped, every
        later byte is handed to ``handle`` and counted."""
        return StreamReader(self.socks[name], token, handle)

    def close(self) -> None:
        """Close every socket (the guest sees its host go away)."""
        for sock in self.socks.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class StreamReader:
    """Reads one output port in a thread; see :meth:`Channel.read_stream`."""

    def __init__(self, sock: socket.socket, token: bytes, handle: Callable[[bytes], None]) -> None:
        self.sock, self.token, self.handle = sock, token, handle
        self.count = 0
        self.synced = False
        self.closed = False
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        window = b""
        try:
            while chunk := self.sock.recv(CHUNK):
                if not self.synced:
                    window += chunk
                    at = window.find(self.token)
                    if at < 0:
                        window = window[-(TOKEN_LEN - 1) :]
                        continue
                    self.synced = True
                    chunk = window[at + TOKEN_LEN :]
                    window = b""
                    if not chunk:
                        continue
                self.handle(chunk)
                with self._changed:
                    self.count += len(chunk)
                    self._changed.notify_all()
        except OSError:
            pass
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, total: int, timeout: float) -> bool:
        """Wait until ``total`` bytes came (or the port closed); whether they all came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count < total and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self.count >= total


def open_folder(path: Path) -> int:
    """An ``O_PATH`` descriptor of a VM's folder, for :func:`socket_path`."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
