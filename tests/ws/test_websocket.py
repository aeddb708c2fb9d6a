"""WebSocket server: echo, sizes, fragments, ping, close codes, broadcast, API errors.

Peers are real client libraries (websockets, websocket-client) and, for
exact byte sequences, the raw client of ``support.ws``.
"""

import asyncio
import pickle
import struct
import time
from typing import Any, List

import httpx
import pytest
import websocket
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed

import cymongoose as cm
from cymongoose.ws import CLOSE_WAIT
from support.loop import wait_until
from support.ws import EchoServer, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient, SyncClient, frame


@pytest.fixture
def echo(server_factory):
    """An echo server: (EchoServer recorder, LoopThread, port)."""
    rec = EchoServer()
    loop, port = server_factory(rec)
    return rec, loop, port


def _url(port: int, path: str = "/ws") -> str:
    return "ws://127.0.0.1:%d%s" % (port, path)


# -- echo -------------------------------------------------------------------


def test_text_echo_and_flags(echo):
    rec, _, port = echo
    with SyncClient(_url(port)) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
    msgs = rec.of(cm.MG_EV_WS_MSG)
    assert msgs[0][1] == (0x81, b"hello")
    assert rec.of(cm.MG_EV_WS_OPEN)[0][1] == "/ws"


def test_binary_echo_and_flags(echo):
    rec, _, port = echo
    payload = bytes(range(256))
    with SyncClient(_url(port)) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
    assert rec.of(cm.MG_EV_WS_MSG)[0][1] == (0x82, payload)


def test_empty_text_and_binary(echo):
    rec, _, port = echo
    with SyncClient(_url(port)) as ws:
        ws.send("")
        assert ws.recv(timeout=10) == ""
        ws.send(b"")
        assert ws.recv(timeout=10) == b""
    assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [(0x81, b""), (0x82, b"")]


def test_one_mebibyte_message(echo):
    _, _, port = echo
    payload = bytes(i * 7 & 0xFF for i in range(1 << 20))
    with SyncClient(_url(port), max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=20) == payload


def test_multibyte_utf8_text(echo):
    rec, _, port = echo
    text = "héllo wörld — ✓ 日本語 😀"
    with SyncClient(_url(port)) as ws:
        ws.send(text)
        assert ws.recv(timeout=10) == text
    assert rec.of(cm.MG_EV_WS_MSG)[0][1] == (0x81, text.encode("utf-8"))


def test_text_property_decodes_utf8(server_factory):
    seen: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            seen.append((data.text, data.data, data.flags & 0x0F))
            conn.ws_send(data.text)

    _, port = server_factory(handler)
    with SyncClient(_url(port)) as ws:
        ws.send("ünïcødé 😀")
        assert ws.recv(timeout=10) == "ünïcødé 😀"
    assert seen == [("ünïcødé 😀", "ünïcødé 😀".encode(), cm.WEBSOCKET_OP_TEXT)]


def test_fragmented_message_arrives_whole(echo):
    rec, _, port = echo
    with SyncClient(_url(port)) as ws:
        ws.send(["frag", "ment", "ed ✓"])  # one message in three frames
        assert ws.recv(timeout=10) == "fragmented ✓"
        ws.send([b"\x00\x01", b"", b"\x02"])
        assert ws.recv(timeout=10) == b"\x00\x01\x02"
    # Reassembled messages report FIN like a single frame.
    assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [
        (0x81, "fragmented ✓".encode()), (0x82, b"\x00\x01\x02")]


def test_fragmented_message_with_interleaved_ping(echo):
    rec, _, port = echo
    ws = websocket.create_connection(_url(port), timeout=10)
    try:
        ws.send_frame(websocket.ABNF.create_frame("one ", websocket.ABNF.OPCODE_TEXT, fin=0))
        ws.ping("mid")
        ws.send_frame(websocket.ABNF.create_frame("two", websocket.ABNF.OPCODE_CONT, fin=1))
        pong = ws.recv_data_frame(True)
        assert (pong[0], pong[1].data) == (websocket.ABNF.OPCODE_PONG, b"mid")
        assert ws.recv() == "one two"
    finally:
        ws.close()
    assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [(0x81, b"one two")]


def test_ping_answered_by_pong(echo):
    rec, _, port = echo
    ws = websocket.create_connection(_url(port), timeout=10)
    try:
        ws.ping(b"are you there")
        opcode, fr = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_PONG
        assert fr.data == b"are you there"
    finally:
        ws.close()
    assert (None in [d for _, d in rec.of(cm.MG_EV_WS_CTL)])  # WS_CTL carries None


def test_pong_through_websockets_ping(echo):
    _, _, port = echo
    with SyncClient(_url(port)) as ws:
        assert ws.ping(b"x")


# -- close ------------------------------------------------------------------


def test_client_initiated_close_code_echoed(echo):
    rec, loop, port = echo
    with SyncClient(_url(port)) as ws:
        ws.send("bye soon")
        assert ws.recv(timeout=10) == "bye soon"
        ws.close(4001, "client leaves")
        assert ws.close_code == 4001  # the server's echo
        assert ws.close_reason == "client leaves"
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert rec.close_codes == [4001]  # what the server saw, via ws_close_code
    assert loop.call(lambda: len(loop.mgr.connections)) == 1  # only the listener


def test_server_initiated_close_code_seen_by_client(server_factory):
    rec = EchoServer()
    after: List[Any] = []

    def on_message(conn: cm.Connection, msg: cm.WsMessage) -> None:
        conn.ws_close(4002, "server says bye")
        try:
            conn.ws_send("too late")
        except RuntimeError as exc:
            after.append(exc)
        conn.ws_close(4003)  # a second call does nothing

    rec.on_message = on_message  # type: ignore[method-assign]
    _, port = server_factory(rec)
    start = time.monotonic()
    with SyncClient(_url(port)) as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "server says bye")
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    # closed by the client's answer, not by the CLOSE_WAIT timeout
    assert time.monotonic() - start < CLOSE_WAIT
    assert rec.close_codes == [4002]  # the client echoed our code
    assert len(after) == 1 and isinstance(after[0], cm.ClosedError)
    assert "close frame already sent" in str(after[0])


def test_server_close_without_answer_times_out(server_factory):
    rec = EchoServer()
    rec.on_message = lambda conn, msg: conn.ws_close(1001, "going away")  # type: ignore
    _, port = server_factory(rec)
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"close me"))
        assert raw.read_close() == (1001, b"going away")
        start = time.monotonic()
        wait_until(lambda: rec.of(cm.MG_EV_CLOSE), timeout=CLOSE_WAIT + 5)
        assert CLOSE_WAIT - 1 < time.monotonic() - start < CLOSE_WAIT + 3
        assert raw.at_eof()
    finally:
        raw.close()


def test_close_reason_and_no_code(echo):
    rec, _, port = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_CLOSE, b""))
        assert raw.read_frame() == (0x88, b"")  # echoed as is
        assert raw.at_eof()
    finally:
        raw.close()
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert rec.close_codes == [1005]


# -- broadcast --------------------------------------------------------------


def test_broadcast_100_clients_100_messages_in_order(server_factory):
    clients, messages = 100, 100
    rec = EchoServer()
    orig = rec.__call__

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        orig(conn, ev, data)
        if ev == cm.MG_EV_WS_OPEN and len(rec.conns) == clients:
            for i in range(messages):
                for c in rec.conns:
                    c.ws_send("msg %d" % i)

    _, port = server_factory(handler)

    async def one() -> List[str]:
        async with aconnect(_url(port), open_timeout=20) as ws:
            return [await asyncio.wait_for(ws.recv(), 30) for _ in range(messages)]

    async def main() -> List[List[str]]:
        return await asyncio.gather(*(one() for _ in range(clients)))

    results = asyncio.run(main())
    expected = ["msg %d" % i for i in range(messages)]
    assert len(results) == clients
    assert all(r == expected for r in results)


# -- state and API errors -----------------------------------------------------


def test_is_websocket_and_ws_open_inside_upgrade(server_factory):
    log: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            log.append(("before", conn.is_websocket))
            conn.ws_upgrade(data, {"X-Extra": "100% sure"})
            # the nested WS_OPEN view died; this outer one did not
            log.append(("after", conn.is_websocket, data.uri))
        elif ev == cm.MG_EV_WS_OPEN:
            log.append(("open", conn.is_websocket, data.uri, data.header("Upgrade"),
                        data.status()))
        elif ev == cm.MG_EV_WS_MSG:
            log.append(("msg", conn.is_websocket))
            conn.ws_send("ok")

    _, port = server_factory(handler)
    with SyncClient(_url(port, "/up")) as ws:
        assert ws.response.headers["X-Extra"] == "100% sure"
        ws.send("x")
        assert ws.recv(timeout=10) == "ok"
    assert log == [("before", False), ("open", True, "/up", "websocket", 0),
                   ("after", True, "/up"), ("msg", True)]


def test_upgrade_without_key_gets_426(server_factory):
    seen: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
            seen.append(conn.is_websocket)
        elif ev == cm.MG_EV_WS_OPEN:
            seen.append("open")

    _, port = server_factory(handler)
    r = httpx.get("http://127.0.0.1:%d/" % port, timeout=10)
    assert r.status_code == 426
    assert seen == [False]


def test_ws_upgrade_argument_errors(server_factory):
    errors: List[Any] = []
    views: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev != cm.MG_EV_HTTP_MSG:
            return
        calls = [("not a message",), (None,), (data, {"X-Bad": "a\r\nb"}),
                 (data, {"X\nBad": "v"}), (data, {"X": "a\0b"}), (data, "X-Str: 1")]
        if views:
            calls.append((views[0],))  # the first request's view, dead by now
        views.append(data)
        for args in calls:
            try:
                conn.ws_upgrade(*args)
            except Exception as exc:
                errors.append(type(exc))
        conn.reply(200, b"done")

    _, port = server_factory(handler)
    with httpx.Client(timeout=10) as client:
        assert client.get("http://127.0.0.1:%d/" % port).text == "done"
        assert client.get("http://127.0.0.1:%d/" % port).text == "done"
    once = [TypeError, ValueError, ValueError, ValueError, ValueError, TypeError]
    assert errors == once + once + [ValueError]


def test_ws_upgrade_checks_message_before_closed():
    conn = cm.Connection()
    with pytest.raises(TypeError):
        conn.ws_upgrade("nope")
    with pytest.raises(ValueError):
        conn.ws_upgrade(None)
    with pytest.raises(ValueError):
        conn.ws_upgrade(cm.HttpMessage())


def test_ws_send_on_plain_http_raises(server_factory):
    caught: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            try:
                conn.ws_send("not a websocket")
            except RuntimeError as exc:
                caught.append(exc)
            try:
                conn.ws_close()
            except RuntimeError as exc:
                caught.append(exc)
            conn.reply(200, b"plain")

    _, port = server_factory(handler)
    r = httpx.get("http://127.0.0.1:%d/" % port, timeout=10)
    assert r.status_code == 200 and r.content == b"plain"  # no frame bytes mixed in
    assert len(caught) == 2
    for exc in caught:
        assert isinstance(exc, cm.MongooseError)
        assert not isinstance(exc, cm.ClosedError)
        assert "not a WebSocket" in str(exc)


def test_ws_send_on_closed_connection_raises(echo):
    rec, _, port = echo
    with SyncClient(_url(port)) as ws:
        ws.send("x")
        ws.recv(timeout=10)
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    conn = rec.conns[0]
    assert not conn.is_websocket and conn.ws_close_code is None
    for call in (lambda: conn.ws_send("late"), lambda: conn.ws_close(),
                 lambda: cm.Connection().ws_send(b"x", cm.WEBSOCKET_OP_BINARY)):
        with pytest.raises(RuntimeError, match="^Connection has been closed$"):
            call()


def test_ws_send_argument_errors_come_first():
    conn = cm.Connection()  # closed: argument errors still win
    with pytest.raises(TypeError):
        conn.ws_send(None)
    with pytest.raises(TypeError):
        conn.ws_send("x", None)
    with pytest.raises(TypeError):
        conn.ws_send("x", "1")
    with pytest.raises(OverflowError):
        conn.ws_send("x", 2**40)
    with pytest.raises(ValueError):
        conn.ws_send("x", 16)
    with pytest.raises(ValueError):
        conn.ws_send(b"p" * 126, cm.WEBSOCKET_OP_PING)
    with pytest.raises(ValueError):
        conn.ws_close(1005)
    with pytest.raises(ValueError):
        conn.ws_close(1000, "r" * 124)
    with pytest.raises(TypeError):
        conn.ws_close(1000, b"bytes")
    with pytest.raises(TypeError):
        conn.ws_close("1000")


def test_ws_send_ping_pong_and_raw_close_ops(server_factory):
    rec = EchoServer()

    def on_message(conn: cm.Connection, msg: cm.WsMessage) -> None:
        conn.ws_send(b"pp", cm.WEBSOCKET_OP_PING)
        conn.ws_send(b"qq", cm.WEBSOCKET_OP_PONG)
        conn.ws_send(bytearray(b"bin"), cm.WEBSOCKET_OP_BINARY)
        conn.ws_send(struct.pack("!H", 4004) + b"raw", OP_CLOSE)

    rec.on_message = on_message  # type: ignore[method-assign]
    _, port = server_factory(rec)
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"go"))
        assert raw.read_frame() == (0x80 | OP_PING, b"pp")
        assert raw.read_frame() == (0x80 | OP_PONG, b"qq")
        assert raw.read_frame() == (0x82, b"bin")
        assert raw.read_frame() == (0x80 | OP_CLOSE, struct.pack("!H", 4004) + b"raw")
        raw.send(frame(OP_CLOSE, struct.pack("!H", 4004)))  # answer: server closes
        assert raw.at_eof()
    finally:
        raw.close()
    wait_until(lambda: rec.close_codes)
    assert rec.close_codes == [4004]


def test_ws_message_view_dies_with_handler(server_factory):
    kept: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            kept.append((data, data.data))
            conn.ws_send("ok")
        elif ev == cm.MG_EV_WS_CTL:
            kept.append(("ctl", data))

    _, port = server_factory(handler)
    with SyncClient(_url(port)) as ws:
        ws.send("payload")
        assert ws.recv(timeout=10) == "ok"
    wait_until(lambda: any(k[0] == "ctl" for k in kept))
    view, copied = kept[0]
    assert copied == b"payload"
    assert isinstance(view, cm.WsMessage) and bool(view)
    assert (view.data, view.text, view.flags) == (b"", "", 0)
    assert ("ctl", None) in kept


def test_unbound_ws_message_and_pickling(server_factory):
    """Spec 5.1: a view made directly acts as an invalidated one; views are
    always truthy, compare by identity and cannot be pickled, live or dead."""
    unbound = cm.WsMessage()
    assert (unbound.data, unbound.text, unbound.flags, bool(unbound)) == (b"", "", 0, True)
    assert unbound == unbound and unbound != cm.WsMessage()
    live: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            try:
                pickle.dumps(data)
            except TypeError as exc:
                live.append(exc)
            conn.ws_send(data.text)

    _, port = server_factory(handler)
    with SyncClient(_url(port)) as ws:
        ws.send("pickle me")
        assert ws.recv(timeout=10) == "pickle me"
    assert len(live) == 1
    with pytest.raises(TypeError):
        pickle.dumps(unbound)


def test_frames_sent_with_the_upgrade_request_are_read(echo):
    _, _, port = echo
    raw = RawClient(port, first=frame(OP_TEXT, b"early bird"))
    try:
        assert raw.read_frame() == (0x81, b"early bird")
    finally:
        raw.close()
