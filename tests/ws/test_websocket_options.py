"""WebSocket options against the websockets library: permessage-deflate,
large messages, keep-alive pings, subprotocols, client handshake headers.

Our server meets websockets' client (``SyncClient``); our client
(``Manager.ws_connect``) meets websockets' server; a peer that stops
answering is a raw socket that never reads again.
"""

import base64
import hashlib
import os
import socket
import threading
import zlib
from typing import Any, Dict, List, Optional

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import cymongoose as cm
from cymongoose.ws import offered_subprotocols
from support.events import EventLog
from support.fixtures import made
from support.loop import wait_until
from support.ws import EchoServer, OP_PING, RawClient, SyncClient, WebsocketsServer, frame

MiB = 1024 * 1024


def _url(port: int, path: str = "/ws") -> str:
    return "ws://127.0.0.1:%d%s" % (port, path)


class OptionServer(EchoServer):
    """EchoServer whose upgrade passes ``options`` (and may pick a subprotocol)."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options
        self.seen: Dict[str, Any] = {}

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            offered = offered_subprotocols(data)
            self.seen["offered"] = offered
            options = dict(self.options)
            if offered and options.pop("pick_last", False):
                options["subprotocol"] = offered[-1]
            options.pop("pick_last", None)
            conn.ws_upgrade(data, **options)
            self.seen["subprotocol"] = conn.ws_subprotocol
            self.seen["compression"] = conn.ws_compression
            return
        super().__call__(conn, ev, data)


class Recorder(EventLog):
    """Client-side handler recording events (no echo); ``of(kind)`` gives
    ``(kind, *details)`` tuples as the tests compare them."""

    def __init__(self) -> None:
        super().__init__()
        self.conn_info: Dict[str, Any] = {}

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_WS_OPEN:
            self.conn_info = {"subprotocol": conn.ws_subprotocol,
                              "compression": conn.ws_compression}
            self.record(conn, ev, ("open",))
        elif ev == cm.MG_EV_WS_MSG:
            self.record(conn, ev, ("msg", data.flags, data.data))
        elif ev == cm.MG_EV_WS_CTL:
            self.record(conn, ev, ("ctl",))
        elif ev == cm.MG_EV_ERROR:
            self.record(conn, ev, ("error", data))
        elif ev == cm.MG_EV_CLOSE:
            self.record(conn, ev, ("close", conn.ws_close_code))

    def of(self, kind: Any) -> List[Any]:
        with self.lock:
            return [d for _, _, d in self.events if d[0] == kind]


@pytest.fixture
def ws_server():
    yield from made(WebsocketsServer, WebsocketsServer.stop)


async def _echo(ws: Any) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def _connect(loop: Any, url: str, handler: Any, **options: Any) -> cm.Connection:
    return loop.call(lambda: loop.mgr.ws_connect(url, handler, **options))


# -- permessage-deflate -----------------------------------------------------


def test_server_compression_on_with_websockets_client(server_factory):
    srv = OptionServer(compression="deflate")
    _, port = server_factory(srv)
    text = "compress me " * 200
    with SyncClient(_url(port)) as ws:  # websockets offers permessage-deflate
        ext = ws.ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ext.startswith("permessage-deflate")
        for _ in range(3):  # context takeover: later messages reuse the window
            ws.send(text)
            assert ws.recv() == text
        ws.send(os.urandom(5000))
        assert len(ws.recv()) == 5000
    assert srv.seen["compression"] == "deflate"
    assert [d[1][0] for d in srv.of(cm.MG_EV_WS_MSG)] == [0x81, 0x81, 0x81, 0x82]
    assert srv.of(cm.MG_EV_WS_MSG)[0][1][1] == text.encode()  # delivered inflated


def test_server_compression_off_by_default(server_factory):
    srv = OptionServer()
    _, port = server_factory(srv)
    with SyncClient(_url(port)) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"
    assert srv.seen["compression"] is None


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
])
def test_server_compression_parameters(server_factory, offer):
    srv = OptionServer(compression="deflate")
    _, port = server_factory(srv)
    params = {p.split("=")[0].strip(): p for p in offer.split(";")[1:]}
    factory_args: Dict[str, Any] = {}
    if "server_no_context_takeover" in params:
        factory_args.update(server_no_context_takeover=True, client_no_context_takeover=True)
    else:
        factory_args.update(server_max_window_bits=9, client_max_window_bits=10)
    with SyncClient(_url(port), extensions=[ClientPerMessageDeflateFactory(**factory_args)],
                    compression=None) as ws:
        answer = ws.ws.response.headers["Sec-WebSocket-Extensions"]
        for name in params:
            assert name in answer
        for _ in range(3):
            ws.send("again and again " * 50)
            assert ws.recv() == "again and again " * 50


def test_client_compression_with_websockets_server(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    peer = ws_server(_echo)
    cli = Recorder()
    conn = _connect(loop, _url(peer.port), cli, compression="deflate")
    wait_until(lambda: cli.of("open"))
    assert cli.conn_info["compression"] == "deflate"
    text = "squeeze " * 500
    loop.call(lambda: conn.ws_send(text))
    loop.call(lambda: conn.ws_send(text))
    wait_until(lambda: len(cli.of("msg")) == 2)
    assert cli.of("msg") == [("msg", 0x81, text.encode())] * 2
    assert cli.of("error") == []


def test_client_compression_declined_by_server(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    peer = ws_server(_echo, compression=None)
    cli = Recorder()
    conn = _connect(loop, _url(peer.port), cli, compression="deflate")
    wait_until(lambda: cli.of("open"))
    assert cli.conn_info["compression"] is None
    loop.call(lambda: conn.ws_send("plain"))
    wait_until(lambda: cli.of("msg"))
    assert cli.of("msg") == [("msg", 0x81, b"plain")]


def test_compression_bomb_to_server_gets_1009(server_factory):
    srv = OptionServer(compression="deflate")
    _, port = server_factory(srv, limits=cm.Limits(max_ws_message_size=1 * MiB))
    bomb = b"\0" * (64 * MiB)  # deflates to about 64 KiB on the wire
    with SyncClient(_url(port), max_size=None) as ws:
        ws.send(bomb)
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.ws.close_code == 1009
    wait_until(lambda: srv.of(cm.MG_EV_CLOSE))
    errors = [d for _, d in srv.of(cm.MG_EV_ERROR)]
    assert errors and "too large" in errors[0]
    assert srv.of(cm.MG_EV_WS_MSG) == []


def test_compression_bomb_to_client_gets_1009(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    closed: List[Optional[int]] = []

    async def bomber(ws: Any) -> None:
        await ws.send(b"\0" * (32 * MiB))
        try:
            await ws.wait_closed()
        finally:
            closed.append(ws.close_code)

    peer = ws_server(bomber, max_size=None)
    cli = Recorder()
    _connect(loop, _url(peer.port), cli, compression="deflate", max_size=MiB)
    wait_until(lambda: cli.of("close") and closed, timeout=20)
    assert cli.of("msg") == []
    assert "too large" in cli.of("error")[0][1]
    assert closed == [1009]


def _deflate_raw_client(port: int) -> RawClient:
    """A RawClient whose upgrade offers permessage-deflate (accepted)."""
    raw = RawClient.__new__(RawClient)
    raw.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.buf = b""
    key = base64.b64encode(os.urandom(16)).decode()
    raw.send(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" % key).encode())
    assert b"permessage-deflate" in raw._until(b"\r\n\r\n")
    return raw


def test_invalid_compressed_data_fails_with_1002(server_factory):
    srv = OptionServer(compression="deflate")
    _, port = server_factory(srv)
    raw = _deflate_raw_client(port)
    raw.send(frame(2, b"\xff\xff\xff\xff", rsv=0x40))  # not a deflate stream
    assert raw.read_close()[0] == 1002
    raw.close()
    wait_until(lambda: srv.of(cm.MG_EV_CLOSE))
    assert srv.of(cm.MG_EV_WS_MSG) == []


def test_deflate_matches_zlib_raw_stream(server_factory):
    # a message another deflate implementation made (zlib, raw, sync flush)
    srv = OptionServer(compression="deflate")
    _, port = server_factory(srv)
    raw = _deflate_raw_client(port)
    comp = zlib.compressobj(wbits=-15)
    body = comp.compress(b"hello hello hello") + comp.flush(zlib.Z_SYNC_FLUSH)
    raw.send(frame(1, body[:-4], rsv=0x40))
    b0, payload = raw.read_frame()
    assert b0 == 0xC1  # FIN, RSV1, text
    assert zlib.decompressobj(wbits=-15).decompress(payload + b"\0\0\xff\xff") == \
        b"hello hello hello"
    raw.close()


# -- large messages ---------------------------------------------------------


def test_32_mib_message_both_ways_with_server(server_factory):
    srv = OptionServer()
    _, port = server_factory(srv, limits=cm.Limits(max_ws_message_size=64 * MiB))
    payload = os.urandom(32 * MiB)
    with SyncClient(_url(port), max_size=None, compression=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=60) == payload
    assert srv.of(cm.MG_EV_ERROR) == []


def test_32_mib_message_both_ways_with_client(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    peer = ws_server(_echo, max_size=None, compression=None)
    cli = Recorder()
    payload = os.urandom(32 * MiB)
    conn = _connect(loop, _url(peer.port), cli, max_size=64 * MiB)
    wait_until(lambda: cli.of("open"))
    loop.call(lambda: conn.ws_send(payload, cm.WEBSOCKET_OP_BINARY))
    wait_until(lambda: cli.of("msg"), timeout=60)
    assert cli.of("msg")[0][2] == payload


def test_message_over_the_limit_gets_1009(server_factory):
    srv = OptionServer()
    _, port = server_factory(srv, limits=cm.Limits(max_ws_message_size=4 * MiB))
    with SyncClient(_url(port), max_size=None, compression=None) as ws:
        ws.send(b"x" * (4 * MiB))
        assert len(ws.recv(timeout=30)) == 4 * MiB
        # The server closes as soon as the frame's header says too much, so
        # the close may interrupt the send itself.
        with pytest.raises(ConnectionClosed):
            ws.send(b"x" * (4 * MiB + 1))
            ws.recv()
        assert ws.ws.close_code == 1009


def test_client_default_limit_is_3_mib(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())

    async def big(ws: Any) -> None:
        await ws.send(b"y" * (3 * MiB + 1))
        await ws.wait_closed()

    peer = ws_server(big, compression=None)
    cli = Recorder()
    _connect(loop, _url(peer.port), cli)
    wait_until(lambda: cli.of("close"), timeout=20)
    assert cli.of("msg") == [] and "too large" in cli.of("error")[0][1]


# -- keep-alive -------------------------------------------------------------


def test_server_ping_timeout_closes_dead_peer_with_1011(server_factory, caplog):
    srv = OptionServer(ping_interval=0.1, ping_timeout=0.3)
    _, port = server_factory(srv)
    raw = RawClient(port)  # answers nothing from now on
    with caplog.at_level("WARNING", logger="cymongoose"):
        wait_until(lambda: srv.of(cm.MG_EV_CLOSE), timeout=10)
    assert "keepalive ping timeout" in srv.of(cm.MG_EV_ERROR)[0][1]
    assert any("keepalive ping timeout" in r.getMessage() for r in caplog.records)
    b0, payload = raw.read_frame()
    assert b0 & 0x0F == OP_PING and len(payload) == 4
    assert raw.read_close()[0] == 1011
    raw.close()


def test_server_pings_keep_a_live_peer(server_factory, ws_server):
    # the peer is our own client, which answers every PING
    srv = OptionServer(ping_interval=0.05, ping_timeout=1)
    loop, port = server_factory(srv)
    cli = Recorder()
    _connect(loop, _url(port), cli)
    wait_until(lambda: len(cli.of("ctl")) >= 4)  # four PINGs answered
    assert srv.of(cm.MG_EV_ERROR) == [] and srv.of(cm.MG_EV_CLOSE) == []
    assert len(srv.of(cm.MG_EV_WS_CTL)) >= 3  # their PONGs


def test_client_pings_websockets_server(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    peer = ws_server(_echo)
    cli = Recorder()
    _connect(loop, _url(peer.port), cli, ping_interval=0.05, ping_timeout=1)
    wait_until(lambda: len(cli.of("ctl")) >= 4)  # PONGs from websockets
    assert cli.of("error") == [] and cli.of("close") == []


def test_client_ping_timeout_against_silent_server(server_factory):
    loop, _ = server_factory(EchoServer())
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    held: List[socket.socket] = []

    def silent() -> None:
        s, _ = lsock.accept()
        s.settimeout(10)
        req = b""
        while b"\r\n\r\n" not in req:
            req += s.recv(4096)
        key = [ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        held.append(s)  # never answers again

    t = threading.Thread(target=silent, daemon=True)
    t.start()
    cli = Recorder()
    _connect(loop, "ws://127.0.0.1:%d/" % lsock.getsockname()[1], cli,
             ping_interval=0.1, ping_timeout=0.3)
    wait_until(lambda: cli.of("close"), timeout=10)
    assert "keepalive ping timeout" in cli.of("error")[0][1]
    t.join(10)
    for s in held:
        s.close()
    lsock.close()


# -- subprotocols and client headers ----------------------------------------


def test_server_selects_a_subprotocol(server_factory):
    srv = OptionServer(pick_last=True)
    _, port = server_factory(srv)
    with SyncClient(_url(port), subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.ws.subprotocol == "chat.v2"
        ws.send("x")
        assert ws.recv() == "x"
    assert srv.seen["offered"] == ("chat.v1", "chat.v2")
    assert srv.seen["subprotocol"] == "chat.v2"


def test_server_answers_no_subprotocol_unless_selected(server_factory):
    srv = OptionServer()
    _, port = server_factory(srv)
    with SyncClient(_url(port), subprotocols=["a", "b"]) as ws:
        assert ws.ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.ws.response.headers


def test_server_subprotocol_not_offered_raises(server_factory):
    errors: List[BaseException] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            try:
                conn.ws_upgrade(data, subprotocol="other")
            except ValueError as exc:
                errors.append(exc)
                conn.reply(400, b"no")

    _, port = server_factory(handler)
    with pytest.raises(Exception):
        SyncClient(_url(port), subprotocols=["a"])
    wait_until(lambda: errors)
    assert "not offered" in str(errors[0])


def test_client_subprotocols_origin_and_headers(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())
    seen: Dict[str, Any] = {}

    async def handler(ws: Any) -> None:
        seen["headers"] = ws.request.headers
        seen["subprotocol"] = ws.subprotocol
        await _echo(ws)

    peer = ws_server(handler, subprotocols=["y", "z"])
    cli = Recorder()
    _connect(loop, _url(peer.port), cli, subprotocols=["x", "y"], origin="https://example.org",
             headers={"Authorization": "Bearer t0k3n", "X-Trace": "42"})
    # The peer's handler may run after our side saw the handshake's answer.
    wait_until(lambda: cli.of("open") and "subprotocol" in seen)
    assert cli.conn_info["subprotocol"] == "y"
    assert seen["subprotocol"] == "y"
    assert seen["headers"]["Origin"] == "https://example.org"
    assert seen["headers"]["Authorization"] == "Bearer t0k3n"
    assert seen["headers"]["X-Trace"] == "42"
    assert seen["headers"]["Sec-WebSocket-Protocol"] == "x, y"


def test_client_refuses_subprotocol_not_offered(server_factory, ws_server):
    loop, _ = server_factory(EchoServer())

    def pick(_conn: Any, _offered: Any) -> str:
        return "rogue"

    peer = ws_server(_echo, select_subprotocol=pick)
    cli = Recorder()
    _connect(loop, _url(peer.port), cli, subprotocols=["x"])
    wait_until(lambda: cli.of("close"))
    assert cli.of("open") == []
    assert "subprotocol not offered" in cli.of("error")[0][1]


@pytest.mark.parametrize("kwargs, exc", [
    ({"subprotocols": "chat"}, TypeError),
    ({"subprotocols": ["bad name"]}, ValueError),
    ({"compression": "gzip"}, ValueError),
    ({"max_size": -1}, ValueError),
    ({"max_size": 1.5}, TypeError),
    ({"ping_interval": 0}, ValueError),
    ({"ping_timeout": "1"}, TypeError),
    ({"headers": ["x"]}, TypeError),
    ({"headers": {"X": "a\r\nb"}}, ValueError),
])
def test_ws_connect_option_errors(kwargs, exc):
    with cm.Manager() as mgr:
        with pytest.raises(exc):
            mgr.ws_connect("ws://127.0.0.1:1/", **kwargs)
