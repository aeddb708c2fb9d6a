"""WebSocket test helpers: a recording echo handler and a raw-socket client.

The raw client writes frames byte by byte as the tests choose (malformed
ones included), which no client library will do.
"""

import asyncio
import base64
import os
import socket
import struct
import threading
from typing import Any, Callable, List, Optional, Tuple

from websockets.asyncio.client import connect as _aconnect
from websockets.asyncio.server import serve as _aserve

import cymongoose as cm
from support.events import EventLog

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class EchoServer(EventLog):
    """Handler that upgrades every request and echoes every message.

    Records ``(conn_id, ev, detail)`` for WS_OPEN, WS_MSG (flags, data),
    WS_CTL, ERROR and CLOSE, guarded by a lock (the poll thread writes,
    the test thread reads).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conns: List[cm.Connection] = []
        self.close_codes: List[Optional[int]] = []

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
            return
        if ev == cm.MG_EV_WS_OPEN:
            self.record(conn, ev, data.uri)
            with self.lock:
                self.conns.append(conn)
        elif ev == cm.MG_EV_WS_MSG:
            self.record(conn, ev, (data.flags, data.data))
            self.on_message(conn, data)
        elif ev == cm.MG_EV_WS_CTL:
            self.record(conn, ev, data)
        elif ev == cm.MG_EV_ERROR:
            self.record(conn, ev, data)
        elif ev == cm.MG_EV_CLOSE:
            with self.lock:
                self.close_codes.append(conn.ws_close_code)
            self.record(conn, ev, None)

    def on_message(self, conn: cm.Connection, msg: cm.WsMessage) -> None:
        conn.ws_send(msg.data, msg.flags & 0x0F)


def frame(op: int, payload: bytes = b"", fin: bool = True, mask: bool = True,
          rsv: int = 0, length: Optional[int] = None) -> bytes:
    """One frame; ``length`` overrides the declared payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | op])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def upgrade_request(port: int, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode()


class RawClient:
    """A WebSocket client on a plain socket; every read is bounded by a timeout."""

    def __init__(self, port: int, first: bytes = b"", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(upgrade_request(port) + first)
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before %r" % sep)
        head, self.buf = self.buf.split(sep, 1)
        return head

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed mid-frame")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> Tuple[int, bytes]:
        """``(first header byte, payload)`` of the next frame from the server."""
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return b0, self._take(n)

    def read_close(self) -> Tuple[int, bytes]:
        """Skip to the server's CLOSE frame: ``(code, reason)``."""
        while True:
            b0, payload = self.read_frame()
            if b0 & 0x0F == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def at_eof(self) -> bool:
        """True once the server has closed the TCP connection."""
        while True:
            try:
                if not self._fill():
                    return True
            except ConnectionResetError:
                return True
            self.buf = b""

    def close(self) -> None:
        self.sock.close()


class SyncClient:
    """websockets' asyncio client, driven step by step from the test thread.

    Not ``websockets.sync``: that runs a reader thread per connection, and
    PyPy 3.9's ``Thread.join`` races with it ("cannot release un-acquired
    lock", reproduced without cymongoose).  Here nothing runs between calls.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        kwargs.setdefault("open_timeout", 10)
        kwargs.setdefault("close_timeout", 10)
        try:
            self.ws = self._run(_aconnect(url, **kwargs))
        except BaseException:
            self.loop.close()
            raise

    def _run(self, aw: Any, timeout: float = 20.0) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(aw, timeout))

    def send(self, message: Any) -> None:
        self._run(self.ws.send(message))

    def recv(self, timeout: float = 10.0) -> Any:
        return self._run(self.ws.recv(), timeout)

    def ping(self, data: bytes, timeout: float = 10.0) -> bool:
        """Send a PING; True once the matching PONG arrived."""
        waiter = self._run(self.ws.ping(data))
        self._run(waiter, timeout)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket, then the client's event loop (once)."""
        if self.loop.is_closed():
            return
        try:
            self._run(self.ws.close(code, reason))
        finally:
            self.loop.close()

    @property
    def response(self) -> Any:
        return self.ws.response

    @property
    def subprotocol(self) -> Optional[str]:
        return self.ws.subprotocol

    @property
    def close_code(self) -> Optional[int]:
        return self.ws.close_code

    @property
    def close_reason(self) -> Optional[str]:
        return self.ws.close_reason

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class WebsocketsServer:
    """A websockets (asyncio) server on its own thread and event loop.

    ``kwargs`` go to ``websockets.asyncio.server.serve`` (compression,
    max_size, subprotocols, ...).
    """

    def __init__(self, handler: Callable[[Any], Any], **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self._start(handler, kwargs))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _start(self, handler: Callable[[Any], Any], kwargs: Any) -> Any:
        return await _aserve(handler, "127.0.0.1", 0, **kwargs)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.server.close()
        self.loop.run_until_complete(asyncio.wait_for(self.server.wait_closed(), 10))
        self.loop.close()
