"""Helpers for the hardening tests: a recording server, raw peers, Mongoose's log."""

import contextlib
import logging
import os
import socket
from typing import Any, Iterator

import cymongoose as cm
from support.events import EventLog
from support.http_raw import get_close, parse_response
from support.loop import LoopThread, wait_until
from support.sockets import connect


class Recorder(EventLog):
    """A handler that answers every HTTP request with its URI and echoes WebSocket messages.

    ``/ws`` upgrades; ``/big`` answers with ``big`` bytes.  Every event of
    interest is recorded as ``(conn_id, ev, detail)``.
    """

    def __init__(self, big: int = 0) -> None:
        super().__init__()
        self.big = b"x" * big

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            self.record(conn, ev, data.uri)
            if data.uri == "/ws":
                conn.ws_upgrade(data)
            elif data.uri == "/big":
                conn.reply(200, self.big)
            else:
                conn.reply(200, "ok " + data.uri)
        elif ev == cm.MG_EV_WS_MSG:
            self.record(conn, ev, data.data)
            conn.ws_send(data.data, cm.WEBSOCKET_OP_BINARY)
        elif ev in (cm.MG_EV_ERROR, cm.MG_EV_CLOSE, cm.MG_EV_ACCEPT, cm.MG_EV_MQTT_CMD):
            self.record(conn, ev, data.cmd if ev == cm.MG_EV_MQTT_CMD else data)


def served(port: int, path: str = "/fine") -> bool:
    """A well-formed client gets ``200 ok <path>`` from the server on ``port``."""
    status, _, body = parse_response(get_close(port, path))
    return status == 200 and body == ("ok " + path).encode()


@contextlib.contextmanager
def mongoose_errors(caplog: Any) -> Iterator[Any]:
    """Mongoose's MG_LL_ERROR lines captured on the ``cymongoose`` logger."""
    old = cm.log_get()
    cm.log_set(cm.MG_LL_ERROR)
    try:
        with caplog.at_level(logging.ERROR, logger="cymongoose"):
            yield caplog
    finally:
        cm.log_set(old)


def logged(caplog: Any, words: str) -> bool:
    """True once a captured ``cymongoose`` record contains ``words``."""
    return any(words in r.getMessage() for r in caplog.records if r.name == "cymongoose")


def count_conns(loop: LoopThread) -> int:
    """Connections the Manager tracks, read on its poll thread."""
    return int(loop.call(lambda: loop.mgr.live_handles))


def settle(loop: LoopThread, expected: int, timeout: float = 10.0) -> None:
    """Wait until the Manager tracks exactly ``expected`` connections."""
    wait_until(lambda: count_conns(loop) == expected, timeout)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def upgrade(port: int, path: str = "/ws") -> socket.socket:
    """A raw socket that completed a WebSocket handshake with the server."""
    sock = connect(port)
    sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n" % path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake: %r" % head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


class KeepAlive:
    """One keep-alive HTTP client that stays connected across a test."""

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.buf = b""

    def get(self, path: str = "/alive", timeout: float = 10.0) -> bytes:
        """Send one GET and return the body of its response."""
        self.sock.settimeout(timeout)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        assert head.startswith(b"HTTP/1.1 200"), head
        return body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "keep-alive connection closed by the server"
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def mongoose_conns(mgr: cm.Manager) -> int:
    """Connections in Mongoose's own list (the C side), the Manager's wakeup
    pipe aside; call on the poll thread."""
    c = mgr._mgr.conns
    n = 0
    while c != cm._ffi.ffi.NULL:
        n += c.id != mgr._doorbell_id
        c = c.next
    return n
