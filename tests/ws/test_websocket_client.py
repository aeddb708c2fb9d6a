"""``Manager.ws_connect`` against our own server and against a websockets server."""

import base64
import hashlib
import re
import socket
import struct
import threading
from typing import Any, Callable, List, Optional

import pytest
from websockets.exceptions import ConnectionClosed

import cymongoose as cm
from support.fixtures import made
from support.loop import wait_until
from support.ws import EchoServer, OP_CLOSE, OP_TEXT, WebsocketsServer, frame


class Recorder:
    """Client-side handler: records events; ``on_open(conn)`` runs at WS_OPEN."""

    def __init__(self, on_open: Optional[Callable[[cm.Connection], None]] = None) -> None:
        self.lock = threading.Lock()
        self.events: List[Any] = []
        self.on_open = on_open
        self.close_code: Optional[int] = None

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_WS_OPEN:
            self.add(("open", data.status(), conn.is_websocket, conn.is_client))
            if self.on_open is not None:
                self.on_open(conn)
        elif ev == cm.MG_EV_WS_MSG:
            self.add(("msg", data.flags, data.data))
        elif ev == cm.MG_EV_WS_CTL:
            self.add(("ctl", data, conn.ws_close_code))
        elif ev == cm.MG_EV_ERROR:
            self.add(("error", data))
        elif ev == cm.MG_EV_CLOSE:
            self.close_code = conn.ws_close_code
            self.add(("close",))

    def add(self, item: Any) -> None:
        with self.lock:
            self.events.append(item)

    def of(self, kind: str) -> List[Any]:
        with self.lock:
            return [e for e in self.events if e[0] == kind]


@pytest.fixture
def ws_server():
    yield from made(WebsocketsServer, WebsocketsServer.stop)


def _send_both(conn: cm.Connection) -> None:
    conn.ws_send("hi from client")
    conn.ws_send(b"\x00\xffbin", cm.WEBSOCKET_OP_BINARY)


# -- against our own server -------------------------------------------------


def test_ws_connect_to_own_server_both_directions(server_factory):
    srv = EchoServer()
    orig = srv.__call__

    def server(conn: cm.Connection, ev: int, data: Any) -> None:
        orig(conn, ev, data)
        if ev == cm.MG_EV_WS_OPEN:
            conn.ws_send("welcome")
            conn.ws_send(b"\x01\x02", cm.WEBSOCKET_OP_BINARY)

    loop, port = server_factory(server)
    cli = Recorder(on_open=_send_both)
    conn = loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/chat" % port, cli))
    wait_until(lambda: len(cli.of("msg")) == 4)
    assert cli.of("open") == [("open", 101, True, True)]
    assert cli.of("msg") == [("msg", 0x81, b"welcome"), ("msg", 0x82, b"\x01\x02"),
                             ("msg", 0x81, b"hi from client"), ("msg", 0x82, b"\x00\xffbin")]
    # what the server got: the client's masked frames, unmasked
    assert [d for _, d in srv.of(cm.MG_EV_WS_MSG)] == [
        (0x81, b"hi from client"), (0x82, b"\x00\xffbin")]
    assert srv.of(cm.MG_EV_WS_OPEN)[0][1] == "/chat"

    loop.call(lambda: conn.ws_close(4005, "client done"))
    wait_until(lambda: cli.of("close") and srv.of(cm.MG_EV_CLOSE))
    assert srv.close_codes == [4005]  # the server saw the client's code
    assert cli.close_code == 4005  # and echoed it
    assert cli.of("error") == [] and srv.of(cm.MG_EV_ERROR) == []


def test_ws_send_before_ws_open_raises(server_factory):
    srv = EchoServer()
    loop, port = server_factory(srv)
    cli = Recorder()

    def start() -> Any:
        conn = loop.mgr.ws_connect("ws://127.0.0.1:%d/" % port, cli)
        try:
            conn.ws_send("too early")
        except RuntimeError as exc:
            return exc
        return None

    exc = loop.call(start)
    assert isinstance(exc, cm.MongooseError) and "MG_EV_WS_OPEN" in str(exc)
    wait_until(lambda: cli.of("open"))


def test_ws_connect_handshake_rejected(server_factory):
    def plain(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, b"no websocket here")

    loop, port = server_factory(plain)
    cli = Recorder()
    loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/" % port, cli))
    wait_until(lambda: cli.of("close"))
    assert cli.of("open") == []
    assert cli.of("error") == [("error", "ws handshake error")]


def test_ws_connect_bad_url_raises():
    mgr = cm.Manager()
    try:
        with pytest.raises(RuntimeError, match="Failed to create WebSocket connection to ''"):
            mgr.ws_connect("")
        with pytest.raises(TypeError):
            mgr.ws_connect(b"ws://127.0.0.1:1/")  # type: ignore[arg-type]
    finally:
        mgr.close()


# -- against a websockets server --------------------------------------------


def test_ws_connect_to_websockets_server_both_directions(server_factory, ws_server):
    got: List[Any] = []

    async def handler(ws: Any) -> None:
        await ws.send("hello from websockets")
        await ws.send(b"\x01\x02\x03")
        for _ in range(2):
            message = await ws.recv()
            got.append(message)
            await ws.send(message)  # echo, same type
        await ws.close(4006, "server done")

    srv = ws_server(handler)
    loop, _ = server_factory(None)
    cli = Recorder(on_open=_send_both)
    loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/" % srv.port, cli))
    wait_until(lambda: cli.of("close"))
    assert cli.of("open") == [("open", 101, True, True)]
    assert cli.of("msg") == [("msg", 0x81, b"hello from websockets"),
                             ("msg", 0x82, b"\x01\x02\x03"),
                             ("msg", 0x81, b"hi from client"), ("msg", 0x82, b"\x00\xffbin")]
    assert got == ["hi from client", b"\x00\xffbin"]  # str for text, bytes for binary
    assert ("ctl", None, 4006) in cli.of("ctl")  # the server's CLOSE
    assert cli.close_code == 4006
    assert cli.of("error") == []


def test_ws_connect_client_close_seen_by_websockets_server(server_factory, ws_server):
    codes: List[Any] = []

    async def handler(ws: Any) -> None:
        with pytest.raises(ConnectionClosed):  # 4007 is not a "normal" close
            await ws.recv()
        codes.append((ws.close_code, ws.close_reason))

    srv = ws_server(handler)
    loop, _ = server_factory(None)
    cli = Recorder(on_open=lambda conn: conn.ws_close(4007, "client leaves"))
    loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/" % srv.port, cli))
    wait_until(lambda: cli.of("close") and codes)
    assert codes == [(4007, "client leaves")]
    assert cli.close_code == 4007  # the server's answer echoed the code
    assert cli.of("error") == []


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


class RawServer:
    """Accepts one connection, answers the upgrade with 101 plus ``extra``
    bytes in the same write, then keeps what the client sends until EOF."""

    def __init__(self, extra: bytes) -> None:
        self.extra = extra
        self.received = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.I)
            assert key is not None
            accept = base64.b64encode(hashlib.sha1(key.group(1) + GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                         b"\r\n\r\n" + self.extra)
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
            except OSError:
                pass

    def stop(self) -> None:
        self.thread.join(15)
        self.sock.close()
        assert not self.thread.is_alive()


def test_ws_connect_reads_frames_sent_with_the_101(server_factory):
    srv = RawServer(frame(OP_TEXT, b"right away", mask=False) +
                    frame(OP_CLOSE, struct.pack("!H", 1000), mask=False))
    loop, _ = server_factory(None)
    cli = Recorder()
    loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/" % srv.port, cli))
    wait_until(lambda: cli.of("close"))
    srv.stop()
    assert cli.of("open") and cli.of("msg") == [("msg", 0x81, b"right away")]
    assert cli.close_code == 1000 and cli.of("error") == []
    # the client echoed the CLOSE, masked: 0x88, mask bit + length 2
    assert srv.received[:2] == b"\x88\x82"


def test_ws_connect_rejects_masked_server_frame(server_factory):
    srv = RawServer(frame(OP_TEXT, b"masked", mask=True))
    loop, _ = server_factory(None)
    cli = Recorder()
    loop.call(lambda: loop.mgr.ws_connect("ws://127.0.0.1:%d/" % srv.port, cli))
    wait_until(lambda: cli.of("close"))
    srv.stop()
    assert cli.of("msg") == []
    assert cli.of("error") == [("error", "WebSocket protocol error: masked frame from server")]
    # a masked CLOSE 1002 went out before the socket closed
    assert srv.received[0] == 0x88 and srv.received[1] & 0x80
    payload_len = srv.received[1] & 0x7F
    key, body = srv.received[2:6], srv.received[6:6 + payload_len]
    code = bytes(b ^ key[i & 3] for i, b in enumerate(body[:2]))
    assert struct.unpack("!H", code)[0] == 1002
