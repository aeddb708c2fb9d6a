"""Lifecycle of Manager, Connection and HttpMessage: errors, closing, leaks, handlers, run()."""

import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

import httpx
import pytest

import cymongoose as cm
from support.http_raw import get_close, parse_response, raw_request
from support.loop import InThread, poll_until, wait_until
from support.sockets import read_until, read_until_closed

CLOSED = "Connection has been closed"
FREED = "Manager has been freed"
REENTRANT = ("poll() is not reentrant and must not be called concurrently. "
             "Use AsyncManager for multi-threaded access.")
CLOSE_WHILE_POLLING = ("Cannot close Manager while poll() is active. "
                       "Stop all polling threads before calling close().")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def boom_app(conn, ev, hm):
    """``/boom`` answers, then raises; everything else answers "fine"."""
    if ev != cm.MG_EV_HTTP_MSG:
        return
    if hm.uri == "/boom":
        conn.reply(500, "about to raise")
        raise ValueError("boom " + hm.uri)
    conn.reply(200, "fine")


# -- exceptions raised by handlers ----------------------------------------------

def test_handler_exception_goes_to_error_handler(server_factory):
    errors = []
    _, port = server_factory(boom_app, error_handler=errors.append)
    with httpx.Client(timeout=10) as c:
        assert c.get("http://127.0.0.1:%d/boom" % port).status_code == 500
        # the same keep-alive connection, and the server, keep working
        assert c.get("http://127.0.0.1:%d/ok" % port).text == "fine"
    wait_until(lambda: errors)
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "boom /boom"
    assert errors[0].__traceback__ is not None


def test_handler_exception_without_error_handler_prints_traceback(server_factory, capsys):
    _, port = server_factory(boom_app)
    with httpx.Client(timeout=10) as c:
        assert c.get("http://127.0.0.1:%d/boom" % port).status_code == 500
        assert c.get("http://127.0.0.1:%d/ok" % port).text == "fine"
    err = wait_until(lambda: capsys.readouterr().err)
    assert "Traceback (most recent call last)" in err
    assert "ValueError: boom /boom" in err
    assert "boom_app" in err  # the handler's frame is in the traceback


def test_error_handler_that_raises(server_factory, capsys):
    calls = []

    def bad_error_handler(exc):
        calls.append(exc)
        raise RuntimeError("error handler failed too")

    _, port = server_factory(boom_app, error_handler=bad_error_handler)
    with httpx.Client(timeout=10) as c:
        assert c.get("http://127.0.0.1:%d/boom" % port).status_code == 500
        assert c.get("http://127.0.0.1:%d/ok" % port).text == "fine"
    err = wait_until(lambda: capsys.readouterr().err)
    assert "RuntimeError: error handler failed too" in err
    assert len(calls) == 1 and isinstance(calls[0], ValueError)


def test_non_callable_handler_is_a_handler_error():
    errors = []
    with cm.Manager(42, error_handler=errors.append) as mgr:
        mgr.listen("tcp://127.0.0.1:0")  # OPEN reaches the "handler" inside listen()
        mgr.poll(0)
    assert errors and all(isinstance(e, TypeError) for e in errors)


def test_keyboard_interrupt_in_handler_leaves_bookkeeping_intact():
    stored = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            stored.append((conn, hm))
            conn.reply(200, "answered")
            raise KeyboardInterrupt("in HTTP_MSG")
        if ev == cm.MG_EV_CLOSE and not conn.is_listening:
            raise KeyboardInterrupt("in CLOSE")

    mgr = cm.Manager(handler)
    lsn = mgr.listen("http://127.0.0.1:0")
    port = lsn.local_addr[1]

    def get_then_close():
        # Keep-alive, so the client's close (after the whole response) makes
        # the CLOSE event of a later poll than the request's.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            return read_until(s, lambda got: got.endswith(b"answered"))

    job = InThread(get_then_close)
    interrupts = []
    deadline = time.monotonic() + 10
    while not (job.done and len(interrupts) == 2):
        assert time.monotonic() < deadline, interrupts
        try:
            mgr.poll(10)
        except KeyboardInterrupt as exc:
            interrupts.append(str(exc))
    assert interrupts == ["in HTTP_MSG", "in CLOSE"]
    assert parse_response(job.result())[2] == b"answered"
    conn, hm = stored[0]
    assert not hm and hm.method == ""  # the view was invalidated anyway
    assert conn.id == 0 and conn not in mgr.connections
    assert mgr.connections == (lsn,)
    # Outside the loop again: close() acts at once, so nothing thinks we are inside.
    closes = []
    lsn.set_handler(lambda c, ev, d: closes.append(ev) if ev == cm.MG_EV_CLOSE else None)
    lsn.close()
    assert closes == [cm.MG_EV_CLOSE] and mgr.connections == ()
    mgr.close()


def test_keyboard_interrupt_during_close_calls():
    def handler(conn, ev, data):
        if ev == cm.MG_EV_CLOSE:
            raise KeyboardInterrupt(conn.id)

    mgr = cm.Manager(handler)
    a = mgr.listen("tcp://127.0.0.1:0")
    b = mgr.listen("tcp://127.0.0.1:0")
    a_id = a.id
    with pytest.raises(KeyboardInterrupt) as info:
        a.close()  # outside the loop: CLOSE fires inside close()
    assert info.value.args == (a_id,)
    assert a.id == 0 and mgr.connections == (b,)
    with pytest.raises(KeyboardInterrupt):
        mgr.close()
    assert b.id == 0 and mgr.connections == () and mgr.live_handles == 0
    with pytest.raises(RuntimeError, match=FREED):
        mgr.poll(0)
    mgr.close()  # still idempotent


# -- message views --------------------------------------------------------------

def assert_dead_view(hm: cm.HttpMessage) -> None:
    assert not hm
    assert (hm.method, hm.uri, hm.query, hm.proto) == ("", "", "", "")
    assert hm.body_bytes == b"" and hm.body_text == ""
    assert hm.headers() == []
    assert hm.header("Host") is None and hm.header("Host", "d") == "d"
    assert hm.query_var("a") is None
    assert hm.status() is None
    assert hm.header_var("Content-Type", "charset") is None


def test_stored_http_message_is_dead_after_callback(server_factory):
    stored = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            assert hm and hm.query_var("a") == "1"
            stored.append(hm)
            conn.reply(200, "ok")

    _, port = server_factory(handler)
    get_close(port, "/x?a=1", "Content-Type: text/plain; charset=utf-8\r\n")
    wait_until(lambda: stored)
    assert_dead_view(stored[0])


def test_unbound_http_message_and_pickling():
    hm = cm.HttpMessage()
    assert_dead_view(hm)
    with pytest.raises(TypeError):
        pickle.dumps(hm)
    with pytest.raises(TypeError):
        pickle.dumps(cm.Connection())


def test_unbound_mqtt_message_answers_every_accessor_empty():
    mm = cm.MqttMessage()
    assert (mm.topic, mm.data, mm.text, mm.id, mm.cmd, mm.qos, mm.ack, mm.retain,
            mm.dgram, mm.properties()) == ("", b"", "", 0, 0, 0, 0, False, b"", [])


# -- closed connections ---------------------------------------------------------

def closed_calls(hm):
    """Every Connection method that must raise on a closed connection, with arguments."""
    calls = [
        ("send", ("x",)), ("reply", (200, "x")), ("reply_json", ({"a": 1},)),
        ("serve_dir", (hm, ".")), ("serve_file", (hm, "x.txt")),
        ("ws_upgrade", (hm,)), ("ws_send", ("x",)),
        ("mqtt_pub", ("t", "m")), ("mqtt_sub", ("t",)), ("mqtt_unsub", ("t",)),
        ("mqtt_ping", ()), ("mqtt_pong", ()), ("mqtt_disconnect", ()),
        ("error", ("msg",)), ("resolve", ("tcp://127.0.0.1:1",)), ("resolve_cancel", ()),
        ("http_basic_auth", ("u", "p")), ("sntp_request", ()),
        ("http_chunk", ("x",)), ("http_sse", ("e", "d")),
        ("tls_free", ()),
    ]
    if hasattr(cm, "TlsOpts"):
        calls.append(("tls_init", (cm.TlsOpts(),)))
    return calls


CLOSED_METHODS = [name for name, _ in closed_calls(None)] + ["tls_init"]


def try_calls(conn, hm):
    out = {}
    for name, args in closed_calls(hm):
        method = getattr(conn, name, None)
        if method is None:
            out[name] = "missing"
            continue
        try:
            method(*args)
            out[name] = "no error"
        except Exception as exc:
            out[name] = (type(exc), str(exc))
    return out


@pytest.fixture(scope="module")
def closed_results():
    """Run the closed-connection calls inside a live handler, with a live message.

    Three kinds of closed connection: one whose MG_EV_CLOSE has been
    processed, an inert ``Connection()``, and the handler's own connection
    right after ``close()`` (deferred inside the loop).
    """
    res = {"events": []}

    def handler(conn, ev, hm):
        res["events"].append((conn, ev))
        if ev != cm.MG_EV_HTTP_MSG:
            return
        if hm.uri == "/first":
            res["dead"] = conn
            conn.reply(200, "first")
        else:
            res["after_close_event"] = try_calls(res["dead"], hm)
            res["inert"] = try_calls(cm.Connection(), hm)
            conn.close()
            res["closing_flag"] = conn.is_closing
            res["close_seen_inside"] = (conn, cm.MG_EV_CLOSE) in res["events"]
            res["closing"] = try_calls(conn, hm)
            res["second"] = conn

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    job = InThread(lambda: get_close(port, "/first"))
    poll_until(mgr, lambda: "dead" in res and res["dead"].id == 0 and job.done)
    job = InThread(lambda: get_close(port, "/second"))
    poll_until(mgr, lambda: "second" in res and res["second"].id == 0 and job.done)
    res["second_reply"] = job.result()
    mgr.close()
    return res


@pytest.mark.parametrize("kind", ["after_close_event", "inert", "closing"])
@pytest.mark.parametrize("name", CLOSED_METHODS)
def test_closed_connection_methods_raise(closed_results, kind, name):
    got = closed_results[kind].get(name, "missing")
    if got == "missing":
        pytest.skip("Connection.%s is not part of this build" % name)
    assert got == (cm.ClosedError, CLOSED)
    assert issubclass(cm.ClosedError, RuntimeError)


def test_deferred_close_inside_handler(closed_results):
    # close() inside a handler marks the connection closing at once; its
    # MG_EV_CLOSE arrives after the handler returns, and the client gets EOF.
    assert closed_results["closing_flag"] is True
    assert closed_results["close_seen_inside"] is False
    second = closed_results["second"]
    assert (second, cm.MG_EV_CLOSE) in closed_results["events"]
    assert closed_results["second_reply"] == b""


def test_deferred_close_completes_within_next_poll():
    marks = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.close()
            try:
                conn.reply(200, "too late")
                marks.append("reply accepted")
            except RuntimeError as exc:
                marks.append(str(exc))
        elif ev == cm.MG_EV_CLOSE and not conn.is_listening:
            marks.append("CLOSE")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    job = InThread(lambda: get_close(port, "/"))
    poll_until(mgr, lambda: marks, poll_ms=1)
    polls = 0
    while "CLOSE" not in marks:
        mgr.poll(5000)  # a closing connection keeps the wait short
        polls += 1
        assert polls <= 2
    assert marks == [CLOSED, "CLOSE"]
    assert job.result() == b""
    mgr.close()


def test_close_outside_loop_is_immediate():
    events = []
    mgr = cm.Manager(lambda c, ev, d: events.append(ev))
    lsn = mgr.listen("tcp://127.0.0.1:0")
    port = lsn.local_addr[1]
    out = mgr.connect("tcp://127.0.0.1:%d" % port)
    poll_until(mgr, lambda: cm.MG_EV_CONNECT in events)
    out.send(b"never sent")  # pending data is discarded by close()
    del events[:]
    out.close()
    assert events == [cm.MG_EV_CLOSE]
    assert repr(out) == "<Connection closed>" and out.id == 0
    out.close()  # no-op
    out.drain()  # no-op
    mgr.close()


def test_closed_connection_properties_are_safe():
    mgr = cm.Manager()
    conn = mgr.listen("tcp://127.0.0.1:0")
    assert conn.is_listening and conn.id > 0 and conn.local_addr is not None
    assert repr(conn) == "<Connection id=%d readable=False writable=False>" % conn.id
    conn.userdata = {"kept": True}
    mgr.close()
    for c in (conn, cm.Connection()):
        assert c.id == 0
        assert c.is_closing is True
        for flag in ("is_listening", "is_client", "is_tls", "is_udp", "is_websocket",
                     "is_readable", "is_writable", "is_full", "is_draining"):
            assert getattr(c, flag) is False, flag
        for size in ("recv_len", "send_len", "recv_size", "send_size"):
            assert getattr(c, size) == 0, size
        assert c.local_addr is None and c.remote_addr is None
        assert c.recv_data() == b"" and c.send_data(5) == b""
        assert repr(c) == "<Connection closed>"
        c.close()
        c.drain()

        def h(conn, ev, data):
            return None

        c.set_handler(h)
        assert c.handler is h
    assert conn.userdata == {"kept": True}


def test_inert_connection():
    c = cm.Connection()
    assert c.handler is None and c.userdata is None
    c.userdata = 5
    assert c.userdata == 5
    with pytest.raises(RuntimeError, match=CLOSED):
        c.send(b"x")
    assert c == c and c != cm.Connection() and hash(c) == hash(c)


def test_error_fires_error_now_and_closes_later():
    events = []

    def handler(conn, ev, data):
        events.append((ev, data))

    with cm.Manager(handler) as mgr:
        conn = mgr.listen("tcp://127.0.0.1:0")
        del events[:]
        conn.error("bad %s %d thing")
        assert events == [(cm.MG_EV_ERROR, "bad %s %d thing")]
        assert conn.is_closing
        poll_until(mgr, lambda: conn.id == 0)
        assert events[-1] == (cm.MG_EV_CLOSE, None)


def test_drain_flushes_then_closes(server_factory):
    flags = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "x" * 100000)
            conn.drain()
            flags.append(conn.is_draining)

    _, port = server_factory(handler)
    # no Connection: close in the request, so only drain() ends the connection
    raw = raw_request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert parse_response(raw)[2] == b"x" * 100000
    assert flags == [True]


# -- Manager state --------------------------------------------------------------

def test_manager_close_twice_and_context_manager():
    mgr = cm.Manager()
    mgr.listen("tcp://127.0.0.1:0")
    mgr.close()
    mgr.close()
    with cm.Manager() as m2:
        assert m2.connections == ()
    m2.close()
    with pytest.raises(RuntimeError, match=FREED):
        m2.poll(0)
    assert mgr.connections == () and mgr.live_handles == 0


@pytest.mark.parametrize("create", [
    lambda m: m.listen("tcp://127.0.0.1:0"),
    lambda m: m.listen("http://127.0.0.1:0", lambda *a: None),
    lambda m: m.connect("tcp://127.0.0.1:1"),
    lambda m: m.connect("http://127.0.0.1:1"),
])
def test_creating_connections_on_freed_manager_raises(create):
    mgr = cm.Manager()
    mgr.close()
    with pytest.raises(RuntimeError, match=FREED):
        create(mgr)
    assert mgr.connections == ()


def test_close_inside_handler_raises():
    errors = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_POLL:
            mgr.close()

    mgr = cm.Manager(handler, error_handler=errors.append)
    lsn = mgr.listen("tcp://127.0.0.1:0")
    mgr.poll(0)
    assert [str(e) for e in errors] == [CLOSE_WHILE_POLLING]
    assert isinstance(errors[0], RuntimeError)
    assert lsn.id != 0  # nothing was closed
    lsn.set_handler(lambda *a: None)
    mgr.close()


def test_poll_reentrant_from_handler_raises():
    errors = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_POLL:
            mgr.poll(0)

    mgr = cm.Manager(handler, error_handler=errors.append)
    mgr.listen("tcp://127.0.0.1:0")
    mgr.poll(0)
    assert [str(e) for e in errors] == [REENTRANT]
    mgr.close()


def test_poll_from_another_thread_while_polling_raises():
    results = []

    def other_thread():
        try:
            mgr.poll(0)
            results.append("polled")
        except RuntimeError as exc:
            results.append(str(exc))

    def handler(conn, ev, data):
        if ev == cm.MG_EV_POLL and not results:
            t = threading.Thread(target=other_thread)
            t.start()
            t.join(10)  # the other thread tries while this poll is running

    with cm.Manager(handler) as mgr:
        mgr.listen("tcp://127.0.0.1:0")
        mgr.poll(0)
    assert results == [REENTRANT]


def test_poll_from_handlers_run_outside_poll():
    # Handlers run by listen() or by Manager.close() must not start a poll
    # while Mongoose is mid-call either.
    errors = []

    def handler(conn, ev, data):
        if ev in (cm.MG_EV_OPEN, cm.MG_EV_CLOSE):
            mgr.poll(0)

    mgr = cm.Manager(handler, error_handler=errors.append)
    mgr.listen("tcp://127.0.0.1:0")
    assert [str(e) for e in errors] == [REENTRANT]
    mgr.close()
    assert [str(e) for e in errors] == [REENTRANT, FREED]


def test_manager_is_kept_alive_until_closed():
    mgr = cm.Manager()
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    ref = weakref.ref(mgr)
    del mgr
    gc.collect()
    mgr = ref()
    assert mgr is not None
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # still listening
    mgr.close()
    del mgr
    gc.collect()
    gc.collect()
    assert ref() is None


# -- leaks ----------------------------------------------------------------------

@needs_proc
def test_thousand_connections_leave_nothing_behind():
    refs = []
    closes = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_OPEN:
            refs.append(weakref.ref(conn))
        elif ev == cm.MG_EV_READ and conn.recv_len:
            conn.close()  # deferred: inside the loop
        elif ev == cm.MG_EV_CLOSE:
            closes.append(conn.id)

    fds_before = open_fds()
    mgr = cm.Manager(handler)
    lsn = mgr.listen("tcp://127.0.0.1:0")
    port = lsn.local_addr[1]
    # 500 raw clients that send a byte; the server closes each from its handler
    for i in range(10):
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        for s in socks:
            s.sendall(b"x")
        poll_until(mgr, lambda: len(closes) == 50 * (i + 1))
        assert len(mgr.connections) == 1
        for s in socks:
            s.close()
    # 500 outbound connections to our own listener, closed from outside the loop
    for _ in range(10):
        outs = [mgr.connect("tcp://127.0.0.1:%d" % port) for _ in range(50)]
        poll_until(mgr, lambda: len(mgr.connections) == 101 and
                   all(c.remote_addr and not c.is_closing for c in outs))
        for c in outs:
            c.close()
        poll_until(mgr, lambda: len(mgr.connections) == 1)
    assert len(refs) == 1 + 500 + 500 * 2 == len(closes) + 1
    lsn.close()
    assert mgr.connections == () and mgr.live_handles == 0
    mgr.close()
    del lsn, outs, socks, c, s
    for _ in range(3):
        gc.collect()
    assert sum(1 for r in refs if r() is not None) == 0
    wait_until(lambda: open_fds() <= fds_before, timeout=5)


@needs_proc
def test_closing_hundreds_inside_handlers_keeps_loop_healthy():
    # 0.2.5 freed the connection but left its socket open and registered
    # with the poller: after a few hundred such closes the loop spun at 100%.
    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            if hm.uri == "/close":
                conn.close()
            else:
                conn.reply(200, "alive")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    fds_before = open_fds()

    def clients():
        for _ in range(6):
            socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                     for _ in range(50)]
            for s in socks:
                s.sendall(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
            for s in socks:
                assert read_until_closed(s) == b""  # closed without an answer
                s.close()
        with httpx.Client(timeout=10) as c:
            return c.get("http://127.0.0.1:%d/" % port).text

    job = InThread(clients)
    poll_until(mgr, lambda: job.done, timeout=30)
    assert job.result() == "alive"
    poll_until(mgr, lambda: len(mgr.connections) == 1)
    assert open_fds() <= fds_before  # every socket was released
    # An idle poll waits for its timeout instead of spinning.
    n, start = 0, time.monotonic()
    while time.monotonic() - start < 0.5:
        mgr.poll(50)
        n += 1
    assert n <= 15, "poll returned %d times in 0.5 s while idle" % n
    mgr.close()


# -- handlers: defaults, inheritance, declarations ------------------------------

def test_handler_inheritance_and_set_handler_on_listener():
    seen = []

    def make(name):
        def h(conn, ev, data):
            if ev == cm.MG_EV_READ:
                seen.append((name, conn))
        return h

    a, b, dflt = make("a"), make("b"), make("default")
    mgr = cm.Manager(dflt)
    lsn = mgr.listen("tcp://127.0.0.1:0", a)
    port = lsn.local_addr[1]
    assert lsn.handler is a
    socks = []

    def accept_one():
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        poll_until(mgr, lambda: len(mgr.connections) == len(socks) + 1)
        return mgr.connections[-1]

    c1 = accept_one()
    assert c1.handler is a  # inherited from listen(url, handler)
    lsn.set_handler(b)
    c2 = accept_one()
    assert c2.handler is b and c1.handler is a  # only future children change
    lsn.set_handler(None)
    c3 = accept_one()
    assert c3.handler is None
    for s in socks:
        s.sendall(b"x")
    poll_until(mgr, lambda: len(seen) == 3)
    assert sorted((name, conn.id) for name, conn in seen) == \
        sorted([("a", c1.id), ("b", c2.id), ("default", c3.id)])
    c1.set_handler(b)  # a child's own handler changes for its next events
    socks[0].sendall(b"y")
    poll_until(mgr, lambda: len(seen) == 4)
    assert seen[-1] == ("b", c1)
    for s in socks:
        s.close()
    mgr.close()


def test_events_inside_listen_and_connect_reach_default_handler():
    default, own = [], []
    mgr = cm.Manager(lambda c, ev, d: default.append((c, ev)))

    def mine(c, ev, d):
        own.append((c, ev))

    lsn = mgr.listen("tcp://127.0.0.1:0", mine)
    assert default == [(lsn, cm.MG_EV_OPEN)] and own == []
    out = mgr.connect("tcp://127.0.0.1:%d" % lsn.local_addr[1], mine)
    assert default[1:] == [(out, cm.MG_EV_OPEN), (out, cm.MG_EV_RESOLVE)] and own == []
    poll_until(mgr, lambda: (out, cm.MG_EV_CONNECT) in own)
    # nothing is delivered twice
    assert [ev for c, ev in default + own if c is out].count(cm.MG_EV_OPEN) == 1
    mgr.close()


def test_handles_declaration_filters_poll():
    declared, plain, tracked = [], [], []

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def only_http(conn, ev, hm):
        declared.append(ev)
        # tracked although its OPEN never reached a handler
        tracked.append(conn in mgr.connections)
        conn.reply(200, "declared")

    def everything(conn, ev, hm):
        plain.append(ev)
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "plain")

    mgr = cm.Manager(everything)
    p1 = mgr.listen("http://127.0.0.1:0", only_http).local_addr[1]
    p2 = mgr.listen("http://127.0.0.1:0").local_addr[1]

    def client():
        with httpx.Client(timeout=10) as c:
            return c.get("http://127.0.0.1:%d/" % p1).text, c.get("http://127.0.0.1:%d/" % p2).text

    job = InThread(client)
    poll_until(mgr, lambda: job.done)
    poll_until(mgr, lambda: len(mgr.connections) == 2)  # CLOSE is tracked too
    assert job.result() == ("declared", "plain")
    assert declared == [cm.MG_EV_HTTP_MSG] and tracked == [True]
    assert cm.MG_EV_POLL in plain and cm.MG_EV_HTTP_MSG in plain
    mgr.close()
    assert mgr.connections == ()


# -- run() ----------------------------------------------------------------------

RUN_SCRIPT = r"""
import signal, sys
import cymongoose as cm

def custom_int(signum, frame):
    print("custom SIGINT handler ran", flush=True)

def custom_term(signum, frame):
    print("custom SIGTERM handler ran", flush=True)

signal.signal(signal.SIGINT, custom_int)
signal.signal(signal.SIGTERM, custom_term)
closed = []

def handler(conn, ev, data):
    if ev == cm.MG_EV_POLL and not closed:
        closed.append(0)
        print("ready", flush=True)  # run() has installed its handlers by now
    elif ev == cm.MG_EV_CLOSE:
        closed.append(conn.id)

mgr = cm.Manager(handler)
lsn = mgr.listen("http://127.0.0.1:0")
mgr.run(poll_ms=50)
restored = (signal.getsignal(signal.SIGINT) is custom_int
            and signal.getsignal(signal.SIGTERM) is custom_term)
try:
    mgr.poll(0)
    after = "poll worked"
except RuntimeError as exc:
    after = str(exc)
print("done restored=%s after=%s closes=%d lsn_id=%d" % (restored, after, len(closed) - 1, lsn.id),
      flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_on_signal_restores_handlers_and_closes(sig):
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(cm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        ready = InThread(proc.stdout.readline)
        assert ready.result(timeout=30) == "ready\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert out == "done restored=True after=%s closes=1 lsn_id=0\n" % FREED
    assert "custom" not in out and err == ""


def test_run_off_main_thread_raises_and_keeps_manager_open():
    mgr = cm.Manager()
    lsn = mgr.listen("tcp://127.0.0.1:0")
    job = InThread(lambda: mgr.run(10))
    with pytest.raises(ValueError):
        job.result()
    assert lsn.id != 0
    mgr.poll(0)  # still open
    mgr.close()
