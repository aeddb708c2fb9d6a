"""Calls from other threads.

Connection methods that send or change state are carried to the poll thread
(in order; the caller returns at once, or waits for a value).  Manager
methods and buffer reads raise ``ThreadError`` while another thread polls.
``Manager.wakeup``, ``call_soon_threadsafe`` and ``Timer.cancel`` are
thread-safe.  Between polls any thread may use the Manager.
"""

import threading

import httpx
import pytest

import cymongoose as cm
from cymongoose import _carry
from support.http_raw import get_close, parse_response
from support.loop import LoopThread, wait_until
from support.sockets import connect, read_until_closed


class Blocker:
    """A handler that, on ``/block``, holds the poll thread until released."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.conn = None
        self.sock = None

    def __call__(self, conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            if data.uri == "/block":
                self.conn = conn
                self.inside.set()
                self.release.wait(10)
            conn.reply(200, "ok")


@pytest.fixture
def blocked():
    """A Manager whose poll thread is held inside a handler: (mgr, blocker, conn, port)."""
    blocker = Blocker()
    mgr = cm.Manager(blocker)
    listener = mgr.listen("http://127.0.0.1:0")
    port = listener.local_addr[1]
    loop = LoopThread(mgr).start()
    sock = connect(port)
    blocker.sock = sock
    sock.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
    assert blocker.inside.wait(10)
    yield mgr, blocker, listener, port
    blocker.release.set()
    sock.close()
    loop.stop()
    mgr.close()


# Connection methods that send or change state: carried to the poll thread.
CARRIED_CALLS = {
    "send": lambda c: c.send(b"x"),
    "reply": lambda c: c.reply(200, "x"),
    "reply bytes": lambda c: c.reply(200, b"x"),  # the inline fast path
    "http_chunk": lambda c: c.http_chunk("x"),
    "ws_send": lambda c: c.ws_send("x"),
    "ws_send bytes": lambda c: c.ws_send(b"x", 2),  # the inline fast path
    "close": lambda c: c.close(),
    "drain": lambda c: c.drain(),
    "error": lambda c: c.error("x"),
    "set_handler": lambda c: c.set_handler(None),
}

MANAGER_CALLS = {
    "listen": lambda m: m.listen("http://127.0.0.1:0"),
    "connect": lambda m: m.connect("http://127.0.0.1:1"),
    "ws_connect": lambda m: m.ws_connect("ws://127.0.0.1:1"),
    "mqtt_connect": lambda m: m.mqtt_connect("mqtt://127.0.0.1:1"),
    "timer_add": lambda m: m.timer_add(10, lambda: None),
    "poll": lambda m: m.poll(0),
    "close": lambda m: m.close(),
}


@pytest.mark.parametrize("name", sorted(CARRIED_CALLS))
def test_connection_method_from_another_thread_is_carried(blocked, name):
    mgr, blocker, listener, port = blocked
    # The poll thread is inside a handler: the call only queues, and returns.
    assert CARRIED_CALLS[name](blocker.conn) is None
    assert not blocker.conn.is_closing
    blocker.release.set()
    assert parse_response(get_close(port, "/after"))[2] == b"ok"


def test_reading_buffers_from_another_thread_raises(blocked):
    mgr, blocker, listener, port = blocked
    with pytest.raises(cm.ThreadError):
        blocker.conn.recv_data()
    blocker.release.set()
    assert parse_response(get_close(port, "/after"))[2] == b"ok"


def test_carried_calls_run_in_order_after_the_handler(blocked):
    mgr, blocker, listener, port = blocked
    conn = blocker.conn
    data = bytearray(b"first ")
    conn.send(data)
    data[:] = b"XXXXXX"  # the call copied what it was given
    conn.send(b"second")
    conn.drain()
    blocker.release.set()
    raw = read_until_closed(blocker.sock)
    assert raw.endswith(b"ok" + b"first second"), raw


def test_a_value_returning_call_waits_for_the_poll_thread(blocked, monkeypatch):
    mgr, blocker, listener, port = blocked
    monkeypatch.setattr(_carry, "ANSWER_TIMEOUT", 0.3)
    with pytest.raises(cm.ThreadError, match="did not answer"):
        blocker.conn.recv_consume(0)
    blocker.release.set()
    monkeypatch.setattr(_carry, "ANSWER_TIMEOUT", 10.0)
    # Answered by the poll thread now: its exception travels back to the caller.
    with pytest.raises(cm.MongooseError, match="protocol parser"):
        blocker.conn.recv_consume(0)


def test_sends_from_worker_threads_arrive_whole_and_in_order():
    """0.2.5 code: a handler hands the connection to a worker thread that sends."""
    errors = []
    done = threading.Event()

    def worker(conn):
        for i in range(2000):
            conn.send(b"%06d" % i)
        conn.drain()
        done.set()

    def handler(conn, ev, data):
        if ev == cm.MG_EV_ACCEPT:
            threading.Thread(target=worker, args=(conn,), daemon=True).start()

    mgr = cm.Manager(handler, error_handler=errors.append)
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        with connect(port) as sock:
            raw = read_until_closed(sock, 30)
        assert done.wait(10)
        assert raw == b"".join(b"%06d" % i for i in range(2000))
        assert errors == []
    finally:
        loop.stop()
        mgr.close()


def test_replies_from_a_thread_pool_are_served():
    """0.2.5 code: HTTP requests answered by worker threads."""
    pool = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            uri = data.uri
            t = threading.Thread(target=lambda: conn.reply(200, "from a worker: " + uri))
            pool.append(t)
            t.start()

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10) as client:
            for i in range(50):
                assert client.get("/%d" % i).text == "from a worker: /%d" % i
    finally:
        for t in pool:
            t.join(10)
        loop.stop()
        mgr.close()


def test_an_error_in_a_carried_call_reaches_the_error_handler(server_factory):
    errors = []
    conns = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conns.append(conn)
            conn.reply(200, "ok")

    loop, port = server_factory(handler, error_handler=errors.append)
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: conns)
        threading.Thread(target=lambda: conns[0].ws_send("x")).start()
        wait_until(lambda: errors)
    assert isinstance(errors[0], cm.MongooseError) and "not a WebSocket" in str(errors[0])


@pytest.mark.parametrize("name", sorted(MANAGER_CALLS))
def test_manager_method_from_another_thread_raises(blocked, name):
    mgr, blocker, listener, port = blocked
    before = len(mgr._conns)
    with pytest.raises(cm.ThreadError):
        MANAGER_CALLS[name](mgr)
    assert len(mgr._conns) == before
    blocker.release.set()
    assert parse_response(get_close(port, "/after"))[2] == b"ok"


def test_reentrant_poll_from_a_handler_is_not_a_thread_error(server_factory):
    errors = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            try:
                conn_mgr.poll(0)
            except RuntimeError as exc:
                errors.append(exc)
            conn.reply(200, "ok")

    loop, port = server_factory(handler)
    conn_mgr = loop.mgr
    assert parse_response(get_close(port, "/"))[2] == b"ok"
    assert len(errors) == 1 and not isinstance(errors[0], cm.ThreadError)
    assert "not reentrant" in str(errors[0])


def test_thread_safe_calls_work_while_another_thread_polls():
    woken = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            woken.append(data)

    mgr = cm.Manager(handler, enable_wakeup=True)
    listener = mgr.listen("tcp://127.0.0.1:0")
    fired = []
    timer = mgr.timer_add(60_000, lambda: fired.append(1))
    loop = LoopThread(mgr).start()
    try:
        assert mgr.wakeup(listener.id, b"hi")
        wait_until(lambda: woken == [b"hi"])
        timer.cancel()
        wait_until(lambda: not timer.active)
        assert listener.local_addr is not None  # properties are plain reads
    finally:
        loop.stop()
        mgr.close()
    assert fired == []


def test_manager_handed_to_another_thread_between_polls():
    """Between polls a Manager may move threads: set up here, polled there, used here again."""
    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "moved")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    assert parse_response(get_close(port, "/"))[2] == b"moved"
    second = loop.call(lambda: mgr.listen("http://127.0.0.1:0").local_addr[1])
    loop.stop()
    third = mgr.listen("http://127.0.0.1:0").local_addr[1]  # nobody polls: allowed
    loop = LoopThread(mgr).start()
    try:
        for p in (port, second, third):
            assert parse_response(get_close(p, "/"))[2] == b"moved"
    finally:
        loop.stop()
        mgr.close()


def test_calls_from_the_polling_thread_itself_are_fine(server_factory):
    conns = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.set_handler(handler)
            conn.recv_data()
            conns.append(conn.id)
            conn.reply(200, "same thread")

    loop, port = server_factory(handler)
    assert parse_response(get_close(port, "/"))[2] == b"same thread"
    assert len(conns) == 1 and conns[0] > 1
