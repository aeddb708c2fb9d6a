"""WebSocket messages delivered per poll (``_csrc/core.c``, "the batch").

Small messages reach Python together once a poll has read every
connection, or earlier, before any other event crosses.  What a handler can
observe must not change: the order of its events, its answers going out
before the connection's CLOSE echo or failure, messages after its own
``close()`` dropped, exceptions reported, views dead after the event.
"""

import struct
import threading
from typing import Any, Dict, List

import pytest

import cymongoose as cm
from support.loop import poll_until, run_while_polling, wait_until
from support.ws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, EchoServer, RawClient, frame

DECLARED = cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG, cm.MG_EV_WS_CTL, cm.MG_EV_CLOSE)


def data_frames(raw: RawClient, count: int) -> List[bytes]:
    """The next ``count`` text/binary payloads from the server, skipping PONGs."""
    out = []
    while len(out) < count:
        b0, payload = raw.read_frame()
        if b0 & 0x0F in (OP_TEXT, OP_BINARY):
            out.append(payload)
        else:
            assert b0 & 0x0F == OP_PONG, b0
    return out


@pytest.fixture
def echo(server_factory):
    rec = EchoServer()
    _, port = server_factory(DECLARED(rec))
    return rec, port


def test_messages_and_control_frames_keep_their_order(echo):
    rec, port = echo
    big = b"B" * 5000  # above the batch's limit: crosses on its own
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"a") + frame(OP_PING, b"p") + frame(OP_TEXT, b"b")
                 + frame(OP_BINARY, big) + frame(OP_TEXT, b"") + frame(OP_TEXT, b"c"))
        assert data_frames(raw, 5) == [b"a", b"b", big, b"", b"c"]
    finally:
        raw.close()
    wait_until(lambda: len(rec.of(cm.MG_EV_WS_MSG)) == 5)
    seen = [(ev, d[1] if ev == cm.MG_EV_WS_MSG else d)
            for _, ev, d in rec.events if ev in (cm.MG_EV_WS_MSG, cm.MG_EV_WS_CTL)]
    assert seen == [(cm.MG_EV_WS_MSG, b"a"), (cm.MG_EV_WS_CTL, None), (cm.MG_EV_WS_MSG, b"b"),
                    (cm.MG_EV_WS_MSG, big), (cm.MG_EV_WS_MSG, b""), (cm.MG_EV_WS_MSG, b"c")]
    assert [d[0] for _, d in rec.of(cm.MG_EV_WS_MSG)] == [0x81, 0x81, 0x82, 0x81, 0x81]


def test_answers_to_messages_before_a_close_go_out_before_its_echo(echo):
    rec, port = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"one") + frame(OP_TEXT, b"two")
                 + frame(OP_CLOSE, struct.pack("!H", 1000)))
        assert data_frames(raw, 2) == [b"one", b"two"]
        assert raw.read_close() == (1000, b"")
        assert raw.at_eof()
    finally:
        raw.close()
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert [d[1] for _, d in rec.of(cm.MG_EV_WS_MSG)] == [b"one", b"two"]


def test_answers_to_messages_before_a_bad_frame_go_out_before_the_failure(echo):
    rec, port = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"good") + frame(OP_TEXT, b"unmasked", mask=False))
        assert data_frames(raw, 1) == [b"good"]
        assert raw.read_close()[0] == 1002
    finally:
        raw.close()
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert [d[1] for _, d in rec.of(cm.MG_EV_WS_MSG)] == [b"good"]


def test_an_exception_in_one_handler_does_not_lose_the_next_message(server_factory):
    errors: List[BaseException] = []
    rec = EchoServer()

    def on_message(conn: cm.Connection, msg: cm.WsMessage) -> None:
        if msg.data == b"boom":
            raise RuntimeError("boom")
        conn.ws_send(msg.data, msg.flags & 0x0F)

    rec.on_message = on_message  # type: ignore[method-assign]
    _, port = server_factory(DECLARED(rec), error_handler=errors.append)
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"boom") + frame(OP_TEXT, b"after"))
        assert data_frames(raw, 1) == [b"after"]
    finally:
        raw.close()
    assert [str(e) for e in errors] == ["boom"]


def test_messages_after_a_close_in_a_declared_handler_never_arrive(server_factory):
    got: List[bytes] = []
    closed = threading.Event()

    @cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG, cm.MG_EV_CLOSE)
    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            got.append(data.data)
            conn.close()
        elif ev == cm.MG_EV_CLOSE and not conn.is_listening:
            closed.set()

    _, port = server_factory(handler)
    raw = RawClient(port)
    try:
        raw.send(b"".join(frame(OP_TEXT, b"m%d" % i) for i in range(20)))
        assert closed.wait(10)
    finally:
        raw.close()
    assert got == [b"m0"]


def test_a_message_view_dies_with_its_event(server_factory):
    kept: List[Any] = []
    seen: List[Any] = []
    rec = EchoServer()

    def on_message(conn: cm.Connection, msg: cm.WsMessage) -> None:
        seen.append((msg.data, msg.flags, msg.text, isinstance(msg, cm.WsMessage)))
        kept.append(msg)
        conn.ws_send(msg.data, msg.flags & 0x0F)

    rec.on_message = on_message  # type: ignore[method-assign]
    _, port = server_factory(DECLARED(rec))
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, "héllo".encode()))
        assert data_frames(raw, 1) == ["héllo".encode()]
    finally:
        raw.close()
    assert seen == [("héllo".encode(), 0x81, "héllo", True)]
    assert kept[0].data == b"" and kept[0].flags == 0 and kept[0].text == ""


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "every event"])
def test_many_connections_echo_every_size_in_order(server_factory, declared):
    rec = EchoServer()
    _, port = server_factory(DECLARED(rec) if declared else rec)
    sizes = [0, 1, 125, 126, 4095, 4096, 4097, 10000, 3]
    clients = [RawClient(port) for _ in range(12)]
    try:
        sent = {}
        for n, raw in enumerate(clients):
            payloads = [bytes([65 + n]) * size for size in sizes]
            sent[n] = payloads
            raw.send(b"".join(frame(OP_BINARY, p) for p in payloads))
        for n, raw in enumerate(clients):
            assert data_frames(raw, len(sizes)) == sent[n]
    finally:
        for raw in clients:
            raw.close()


def test_a_flood_of_empty_messages_arrives_whole(server_factory):
    # 2-byte frames make 16-byte records: with several connections flooding
    # at once the batch reaches its bound mid-poll and is delivered there;
    # nothing may be lost or reordered.
    clients, count = 8, 30000
    got: Dict[int, List[bytes]] = {}
    lock = threading.Lock()
    rec = EchoServer()

    def on_message(conn: cm.Connection, msg: cm.WsMessage) -> None:
        with lock:
            got.setdefault(conn.id, []).append(msg.data)

    rec.on_message = on_message  # type: ignore[method-assign]
    _, port = server_factory(DECLARED(rec))
    flood = b"".join(frame(OP_BINARY, b"") for _ in range(count - 1))
    raws = [RawClient(port) for _ in range(clients)]
    try:
        for n, raw in enumerate(raws):
            raw.send(flood + frame(OP_BINARY, b"end%d" % n))

        def done() -> bool:
            with lock:
                return len(got) == clients and all(len(v) == count for v in got.values())

        wait_until(done, timeout=60)
    finally:
        for raw in raws:
            raw.close()
    ends = sorted(v[-1] for v in got.values())
    assert ends == sorted(b"end%d" % n for n in range(clients))
    assert all(v[:-1] == [b""] * (count - 1) for v in got.values())


@pytest.mark.parametrize("declared", [False, True])
def test_an_answer_leaves_in_the_poll_that_read_the_message(declared):
    """The batch is delivered by the poll that read it, and its handlers'
    output goes out in that poll's write burst: no second poll needed."""
    seen: List[bytes] = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            seen.append(data.data)
            conn.ws_send(data.data.upper(), cm.WEBSOCKET_OP_TEXT)

    mgr = cm.Manager(DECLARED(handler) if declared else handler)
    try:
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        raw = run_while_polling(mgr, lambda: RawClient(port))
        try:
            for word in (b"one", b"two"):
                raw.send(frame(OP_TEXT, word))
                poll_until(mgr, lambda: len(seen) == (1 if word == b"one" else 2), poll_ms=50)
                assert raw.read_frame() == (0x81, word.upper())  # no poll since
        finally:
            raw.close()
    finally:
        mgr.close()
