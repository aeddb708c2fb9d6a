"""Per-listener limits (cymongoose.Limits): each limit answers with the status
or close code HTTP and WebSocket clients expect, ends only that connection,
is logged, and requests just under it are served."""

import asyncio
import copy
import logging
import math
import pickle
import socket
import threading
import time
from typing import Any, List, Optional, Tuple

import httpx
import pytest
import websocket

import cymongoose as cm
from support.fixtures import made
from support.loop import LoopThread, wait_until
from support.sockets import connect, read_until_closed
from support.ws import OP_BINARY, OP_CONT, frame, upgrade_request

MiB = 1024 * 1024


class Server:
    """A Manager with one listener (given limits), polled on a thread.

    HTTP requests get ``200 got <body length>``; ``/ws`` is upgraded and
    echoes.  MG_EV_ERROR texts are recorded.
    """

    def __init__(self, limits: Optional[cm.Limits], url: str = "http://127.0.0.1:0",
                 pass_limits: bool = True) -> None:
        self.errors: List[str] = []
        self.lock = threading.Lock()
        self.mgr = cm.Manager(self.handler)
        if pass_limits:
            self.listener = self.mgr.listen(url, limits=limits)
        else:
            self.listener = self.mgr.listen(url)
        self.port = self.listener.local_addr[1]
        self.loop = LoopThread(self.mgr).start()

    def handler(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            if data.uri == "/ws":
                conn.ws_upgrade(data)
            else:
                conn.reply(200, b"got %d" % len(data.body_bytes))
        elif ev == cm.MG_EV_WS_MSG:
            conn.ws_send(data.data, data.flags & 0x0F)
        elif ev == cm.MG_EV_ERROR:
            with self.lock:
                self.errors.append(data)

    def url(self, path: str = "/") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def live(self) -> int:
        """Accepted connections alive (the listener aside)."""
        return self.loop.call(lambda: len(self.mgr.connections)) - 1

    def stop(self) -> None:
        self.loop.stop()
        self.mgr.close()


@pytest.fixture
def server():
    yield from made(Server, Server.stop)


def read_response(sock: socket.socket) -> Tuple[int, bytes]:
    """One response with a Content-Length: (status, body); the socket stays open."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response: %r" % buf
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(head.split()[1]), body


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:100]
    return int(raw.split()[1])


def served(srv: Server) -> bool:
    """A well-formed client is answered, and fast."""
    start = time.monotonic()
    r = httpx.get(srv.url(), timeout=5)
    return r.status_code == 200 and time.monotonic() - start < 1.0


def logged(caplog: Any, text: str) -> List[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cymongoose" and text in r.getMessage()]


# -- the Limits object -----------------------------------------------------------

def test_defaults_are_documented():
    lim = cm.Limits()
    assert lim.max_body_size is None
    assert lim.max_header_size == 32 * 1024
    assert lim.header_timeout == 30.0
    assert lim.idle_timeout == 5.0
    assert lim.max_connections is None
    assert lim.max_ws_message_size is None
    assert cm.DEFAULT_LIMITS == lim
    assert hash(cm.DEFAULT_LIMITS) == hash(lim)


@pytest.mark.parametrize("kwargs, exc", [
    ({"max_body_size": "10"}, TypeError),
    ({"max_body_size": 1.5}, TypeError),
    ({"max_body_size": True}, TypeError),
    ({"max_body_size": -1}, ValueError),
    ({"max_header_size": 0}, ValueError),
    ({"max_connections": 0}, ValueError),
    ({"max_connections": 1 << 64}, ValueError),
    ({"max_ws_message_size": -5}, ValueError),
    ({"header_timeout": "1"}, TypeError),
    ({"header_timeout": False}, TypeError),
    ({"header_timeout": 0}, ValueError),
    ({"idle_timeout": -1.0}, ValueError),
    ({"idle_timeout": math.inf}, ValueError),
    ({"idle_timeout": math.nan}, ValueError),
])
def test_bad_values_raise(kwargs, exc):
    with pytest.raises(exc):
        cm.Limits(**kwargs)


def test_limits_are_immutable_and_keyword_only():
    lim = cm.Limits(max_body_size=10)
    with pytest.raises(AttributeError):
        lim.max_body_size = 20  # type: ignore[misc]
    with pytest.raises(TypeError):
        cm.Limits(10)  # type: ignore[misc]
    changed = lim.replace(idle_timeout=None)
    assert changed.idle_timeout is None and changed.max_body_size == 10
    assert lim.idle_timeout == 5.0
    with pytest.raises(TypeError):
        lim.replace(nope=1)
    with pytest.raises(ValueError):
        lim.replace(max_connections=0)
    assert "max_body_size=10" in repr(lim)
    assert copy.deepcopy(lim) == lim
    assert pickle.loads(pickle.dumps(lim)) == lim


def test_listen_rejects_a_non_limits_argument():
    with cm.Manager() as mgr:
        with pytest.raises(TypeError):
            mgr.listen("http://127.0.0.1:0", limits={"max_body_size": 1})  # type: ignore[arg-type]
        assert mgr.connections == ()


def test_listener_slots_are_released():
    # More listeners over time than there are slots: each close frees one.
    for _ in range(300):
        with cm.Manager() as mgr:
            mgr.listen("http://127.0.0.1:0", limits=cm.Limits(max_connections=5))


def test_too_many_live_listeners_raise_cleanly():
    with cm.Manager() as mgr:
        with pytest.raises(cm.MongooseError, match="Too many listeners"):
            for _ in range(300):
                mgr.listen("tcp://127.0.0.1:0")
        assert 0 < len(mgr.connections) <= 254  # the failed one is closed
    with cm.Manager() as mgr:  # closing freed the slots
        mgr.listen("tcp://127.0.0.1:0", limits=cm.Limits())


# -- request body: 413 --------------------------------------------------------------

def test_body_over_the_limit_gets_413(server, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    srv = server(cm.Limits(max_body_size=1000))
    assert httpx.post(srv.url(), content=b"x" * 1000, timeout=5).text == "got 1000"
    with connect(srv.port) as s:  # the head alone is enough to refuse
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        raw = read_until_closed(s)
    assert status_of(raw) == 413
    assert b"Connection: close" in raw
    r = httpx.post(srv.url(), content=b"x" * 5000, timeout=5)  # body sent as well
    assert r.status_code == 413
    wait_until(lambda: len(srv.errors) >= 2, timeout=5)
    assert srv.errors[0] == "HTTP request body too large (413)"
    lines = wait_until(lambda: logged(caplog, "body too large"), timeout=5)
    assert "127.0.0.1:" in lines[0]
    assert served(srv)


def test_chunked_body_over_the_limit_gets_413(server):
    srv = server(cm.Limits(max_body_size=1000))
    ok = httpx.post(srv.url(), content=iter([b"a" * 400, b"b" * 400]), timeout=5)
    assert ok.text == "got 800"
    with connect(srv.port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"800\r\n" + b"c" * 0x800 + b"\r\n")
        raw = read_until_closed(s)
    assert status_of(raw) == 413
    assert served(srv)


def test_body_beyond_the_receive_buffer_gets_413_not_a_reset(server):
    # Default limits: Mongoose would drop the connection at 3 MiB.
    srv = server(None)
    with connect(srv.port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (4 * MiB))
        raw = read_until_closed(s)
    assert status_of(raw) == 413
    r = httpx.post(srv.url(), content=b"y" * (2 * MiB), timeout=10)
    assert r.text == "got %d" % (2 * MiB)


# -- request head: 431 ------------------------------------------------------------

def test_header_block_over_the_limit_gets_431(server, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    srv = server(cm.Limits(max_header_size=1024))
    assert httpx.get(srv.url(), headers={"X-Pad": "p" * 800}, timeout=5).status_code == 200
    with connect(srv.port) as s:  # whole head in one piece
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1100 + b"\r\n\r\n")
        assert status_of(read_until_closed(s)) == 431
    with connect(srv.port) as s:  # a head that never ends
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            s.sendall(b"X-Pad: " + b"p" * 500 + b"\r\n")
        assert status_of(read_until_closed(s)) == 431
    wait_until(lambda: logged(caplog, "header too large (431)"), timeout=5)
    assert served(srv)


def test_default_header_limit(server):
    srv = server(None, pass_limits=False)
    big = {"X-Pad": "p" * (30 * 1024)}
    assert httpx.get(srv.url(), headers=big, timeout=5).status_code == 200
    assert httpx.get(srv.url(), headers={"X-Pad": "p" * (40 * 1024)},
                     timeout=5).status_code == 431


# -- header timeout: 408 -----------------------------------------------------------

def test_slow_header_gets_408(server, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    srv = server(cm.Limits(header_timeout=0.3))
    with connect(srv.port) as s:
        start = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        # a trickle does not reset the clock
        for _ in range(3):
            assert served(srv)
            s.sendall(b"X")
        raw = read_until_closed(s)
        elapsed = time.monotonic() - start
    assert status_of(raw) == 408
    assert 0.25 <= elapsed < 3.0
    wait_until(lambda: logged(caplog, "header timeout (408)"), timeout=5)
    assert srv.errors == ["HTTP request header timeout (408)"]


def test_silent_connection_is_closed_after_header_timeout(server):
    srv = server(cm.Limits(header_timeout=0.3))
    with connect(srv.port) as s:
        start = time.monotonic()
        assert read_until_closed(s) == b""  # nothing was asked, nothing is answered
        assert 0.25 <= time.monotonic() - start < 3.0
    wait_until(lambda: srv.live() == 0, timeout=5)


def test_many_slow_header_clients_do_not_starve_others(server):
    srv = server(cm.Limits(header_timeout=0.5))
    socks = [connect(srv.port) for _ in range(30)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(3):
            for s in socks:
                s.sendall(b"X")
            assert served(srv)
        for s in socks:
            assert status_of(read_until_closed(s)) == 408
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: srv.live() == 0, timeout=5)


# -- idle keep-alive timeout ---------------------------------------------------------

def test_idle_keep_alive_connection_is_closed(server):
    srv = server(cm.Limits(idle_timeout=0.3))
    with connect(srv.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s) == (200, b"got 0")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive meanwhile
        assert read_response(s) == (200, b"got 0")
        start = time.monotonic()
        assert read_until_closed(s) == b""
        assert 0.25 <= time.monotonic() - start < 3.0
    wait_until(lambda: srv.live() == 0, timeout=5)


def test_no_idle_timeout_keeps_the_connection(server):
    srv = server(cm.Limits(idle_timeout=None, header_timeout=None))
    with connect(srv.port, timeout=0.6) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s) == (200, b"got 0")
        with pytest.raises(socket.timeout):
            s.recv(1)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s) == (200, b"got 0")


# -- simultaneous connections: 503 ------------------------------------------------------

def test_default_listener_has_no_connection_cap(server):
    # 0.2.5 served past 1,000 clients; the default Limits refuse none.
    srv = server(None, pass_limits=False)
    held = [connect(srv.port) for _ in range(1100)]
    try:
        wait_until(lambda: srv.live() == 1100, timeout=30)
        for s in held[::100] + held[-1:]:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s) == (200, b"got 0")
    finally:
        for s in held:
            s.close()


def test_connection_limit_answers_503(server, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    srv = server(cm.Limits(max_connections=2))
    held = [connect(srv.port) for _ in range(2)]
    try:
        wait_until(lambda: srv.live() == 2, timeout=5)
        with connect(srv.port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = read_until_closed(s)
        assert status_of(raw) == 503
        assert b"Retry-After: 1" in raw
        wait_until(lambda: logged(caplog, "connection limit reached"), timeout=5)
        # the held connections are still served
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(held[0]) == (200, b"got 0")
        held.pop().close()
        wait_until(lambda: srv.live() == 1, timeout=5)
        assert served(srv)
    finally:
        for s in held:
            s.close()


def test_connection_limit_on_tcp_listener_closes(server):
    srv = server(cm.Limits(max_connections=1), url="tcp://127.0.0.1:0")
    with connect(srv.port) as first:
        wait_until(lambda: srv.live() == 1, timeout=5)
        with connect(srv.port) as second:
            assert read_until_closed(second) == b""
        wait_until(lambda: srv.live() == 1, timeout=5)
    wait_until(lambda: srv.live() == 0, timeout=5)
    with connect(srv.port):
        wait_until(lambda: srv.live() == 1, timeout=5)


# -- WebSocket messages: 1009 ---------------------------------------------------------

def test_websocket_message_over_the_limit_closes_1009(server, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    srv = server(cm.Limits(max_ws_message_size=1000))
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % srv.port, timeout=5)
    try:
        ws.send_binary(b"a" * 1000)
        assert ws.recv() == b"a" * 1000
        ws.send_binary(b"b" * 1001)
        op, payload = ws.recv_data(control_frame=True)
        assert op == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1009
    finally:
        ws.close()
    wait_until(lambda: logged(caplog, "WebSocket message too large (1009)"), timeout=5)
    assert served(srv)


def test_fragmented_websocket_message_counts_all_fragments(server):
    srv = server(cm.Limits(max_ws_message_size=1000))
    with connect(srv.port) as s:
        s.sendall(upgrade_request(srv.port, "/ws"))
        s.sendall(frame(OP_BINARY, b"x" * 600, fin=False))
        s.sendall(frame(OP_CONT, b"y" * 600))
        data = read_until_closed(s)
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert frames[0] == 0x88 and int.from_bytes(frames[2:4], "big") == 1009
    assert served(srv)


def test_idle_clock_waits_for_a_slow_response(server):
    srv = server(cm.Limits(idle_timeout=0.2, header_timeout=0.2))
    held: List[cm.Connection] = []

    def hold(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            held.append(conn)  # answered later, from the test

    srv.loop.call(lambda: srv.listener.set_handler(hold))  # limits stay
    with connect(srv.port, timeout=0.8) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):  # neither answered nor closed
            s.recv(1)
        assert len(held) == 1
        s.settimeout(5)
        srv.loop.call(lambda: held[0].reply(200, b"late"))
        assert read_response(s) == (200, b"late")
        assert read_until_closed(s) == b""  # then idle, then closed


def test_websocket_connections_count_until_closed(server):
    srv = server(cm.Limits(max_connections=1))
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % srv.port, timeout=5)
    try:
        ws.send("hi")
        assert ws.recv() == "hi"
        r = httpx.get(srv.url(), timeout=5)
        assert r.status_code == 503
    finally:
        ws.close()
    wait_until(lambda: srv.live() == 0, timeout=5)
    assert served(srv)


def test_async_manager_listen_takes_limits():
    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, b"ok")

    async def main() -> Tuple[int, int]:
        async with cm.AsyncManager(handler) as am:
            lsn = am.listen("http://127.0.0.1:0", limits=cm.Limits(max_body_size=10))
            url = "http://127.0.0.1:%d/" % lsn.local_addr[1]
            async with httpx.AsyncClient() as client:
                ok = await client.post(url, content=b"x" * 10, timeout=5)
                big = await client.post(url, content=b"x" * 11, timeout=5)
        return ok.status_code, big.status_code

    assert asyncio.run(main()) == (200, 413)
