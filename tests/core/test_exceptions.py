"""Exceptions anywhere: the bookkeeping stays right and nothing is silently lost.

Handlers raising on every event, timer callbacks raising, an
``error_handler`` that raises, and ``KeyboardInterrupt`` at the worst
moments (inside a handler, and a second one inside the dispatcher's own
clean-up, injected with a trace function at the exact call).
"""

import socket
import sys
import threading

import pytest

import cymongoose as cm
from support.http_raw import get_close, parse_response
from support.loop import LoopThread, wait_until
from support.sockets import connect, read_until_closed
from support.ws import OP_PING, OP_TEXT, RawClient, frame


EVENTS_SEEN_BY_AN_HTTP_AND_WS_SERVER = {
    cm.MG_EV_OPEN, cm.MG_EV_POLL, cm.MG_EV_ACCEPT, cm.MG_EV_READ, cm.MG_EV_WRITE,
    cm.MG_EV_CLOSE, cm.MG_EV_HTTP_HDRS, cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_OPEN,
    cm.MG_EV_WS_MSG, cm.MG_EV_WS_CTL, cm.MG_EV_ERROR,
}


def test_exception_in_every_event_is_reported_and_work_goes_on():
    """The handler does its work, then raises, for every event it gets."""
    errors = []
    delivered = []
    lock = threading.Lock()

    def handler(conn, ev, data):
        with lock:
            delivered.append(ev)
        if ev == cm.MG_EV_HTTP_MSG:
            if data.header("Upgrade"):
                conn.ws_upgrade(data)
            else:
                conn.reply(200, "ok")
        elif ev == cm.MG_EV_WS_MSG:
            conn.ws_send(data.data, cm.WEBSOCKET_OP_TEXT)
        raise ValueError(ev)

    mgr = cm.Manager(handler, error_handler=errors.append)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        for _ in range(3):
            assert parse_response(get_close(port, "/x"))[2] == b"ok"
        raw = RawClient(port, first=b"")
        raw.send(frame(OP_PING, b"p") + frame(OP_TEXT, b"hi"))
        assert raw.read_frame() == (0x8A, b"p")
        assert raw.read_frame() == (0x81, b"hi")
        raw.send(frame(OP_TEXT, b"x", rsv=0x40))  # MG_EV_ERROR too
        raw.read_close()
        raw.close()
        wait_until(lambda: loop.call(lambda: mgr.live_handles) == 1)

        def check():
            with lock:
                return sorted(delivered) == sorted(e.args[0] for e in errors)
        wait_until(lambda: loop.call(check))
        assert EVENTS_SEEN_BY_AN_HTTP_AND_WS_SERVER <= set(delivered)
        assert all(type(e) is ValueError for e in errors)
        assert loop.call(lambda: [c.id for c in mgr.connections]) == [1]
    finally:
        loop.stop()
        mgr.close()
    assert mgr.live_handles == 0


def test_timer_exceptions_are_reported_and_timer_keeps_running():
    errors = []
    ticks = []

    def tick():
        ticks.append(1)
        raise LookupError(len(ticks))

    with cm.Manager(error_handler=errors.append) as mgr:
        mgr.timer_add(1, tick, repeat=True)
        while len(ticks) < 5:
            mgr.poll(5)
    assert [e.args[0] for e in errors[:5]] == [1, 2, 3, 4, 5]


def test_keyboard_interrupt_in_timer_is_raised_by_poll_then_loop_resumes():
    ticks = []

    def tick():
        ticks.append(1)
        if len(ticks) == 2:
            raise KeyboardInterrupt("timer")

    with cm.Manager() as mgr:
        mgr.timer_add(1, tick, repeat=True)
        with pytest.raises(KeyboardInterrupt, match="timer"):
            for _ in range(1000):
                mgr.poll(5)
        while len(ticks) < 4:
            mgr.poll(5)


def test_error_handler_raising_keyboard_interrupt_is_reraised():
    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok")
            raise ValueError("first")

    def error_handler(exc):
        raise KeyboardInterrupt("from error_handler")

    mgr = cm.Manager(handler, error_handler=error_handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    try:
        sock = connect(port)
        sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        with pytest.raises(KeyboardInterrupt, match="from error_handler"):
            for _ in range(1000):
                mgr.poll(5)
        for _ in range(20):  # the reply still goes out, then the close
            mgr.poll(5)
        assert read_until_closed(sock).endswith(b"ok")
        sock.close()
        for _ in range(50):
            mgr.poll(5)
            if mgr.live_handles == 1:
                break
        assert mgr.live_handles == 1
    finally:
        mgr.close()


def test_error_handler_raising_an_exception_prints_both(capsys):
    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok")
            raise ValueError("handler failed")

    def error_handler(exc):
        raise TypeError("error_handler failed too")

    mgr = cm.Manager(handler, error_handler=error_handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        assert parse_response(get_close(port, "/"))[2] == b"ok"
        wait_until(lambda: "error_handler failed too" in capsys.readouterr().err)
    finally:
        loop.stop()
        mgr.close()


def _inject(target_code, exc):
    """Raise ``exc`` once, at the start of the next call of ``target_code`` on this thread."""
    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is target_code:
            sys.settrace(None)
            raise exc
        return None
    sys.settrace(tracer)


# The dispatcher's fast path (HTTP_MSG inside poll) invalidates its view
# inline, with no call a trace-injected interrupt could land in, so only the
# CLOSE bookkeeping is exercised here.
@pytest.mark.parametrize("where", ["forget"])
def test_second_ctrl_c_inside_dispatcher_cleanup(where):
    """Ctrl-C in a handler, then another in the dispatcher's ``finally``:
    poll raises, the Manager stays usable and no stale Connection remains."""
    state = {}

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok")
            conn.drain()
        if ev == cm.MG_EV_CLOSE and where == "forget" and conn.id == state.get("victim"):
            _inject(cm.Manager._forget.__code__, KeyboardInterrupt("second"))
            raise KeyboardInterrupt("first")
        if ev == cm.MG_EV_ACCEPT:
            state.setdefault("victim", conn.id)

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    try:
        sock = connect(port)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        interrupts = []
        for _ in range(2000):
            try:
                mgr.poll(5)
            except KeyboardInterrupt as exc:
                interrupts.append(str(exc))
            if len(interrupts) >= 2 and mgr.live_handles == 1:
                break
            if "victim" in state and sock.fileno() >= 0 and interrupts:
                sock.close()  # let the CLOSE happen
        sys.settrace(None)
        assert sorted(interrupts) == ["first", "second"]
        assert mgr.live_handles == 1
        assert [c.id for c in mgr.connections] == [1]
        assert mgr._inside == 0
        # still serving
        with connect(port) as other:
            other.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            other.setblocking(False)
            got = b""
            for _ in range(400):
                try:
                    mgr.poll(5)
                except KeyboardInterrupt:
                    pass
                try:
                    chunk = other.recv(4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                got += chunk
        assert got.endswith(b"ok")
    finally:
        sys.settrace(None)
        mgr.close()
    assert mgr.live_handles == 0


def test_keyboard_interrupt_in_close_handler_leaves_no_stale_connection():
    closed = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_CLOSE and not conn.is_listening:
            closed.append(conn)
            raise KeyboardInterrupt("in close")

    mgr = cm.Manager(handler)
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    try:
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for _ in range(100):
            mgr.poll(5)
            if mgr.live_handles == 6:
                break
        for s in socks:
            s.close()
        raised = 0
        for _ in range(500):
            try:
                mgr.poll(5)
            except KeyboardInterrupt:
                raised += 1
            if len(closed) == 5 and mgr.live_handles == 1:
                break
        assert raised >= 1 and len(closed) == 5
        assert mgr.live_handles == 1
        assert all(c.id == 0 and c.is_closing for c in closed)
        with pytest.raises(RuntimeError, match="closed"):
            closed[0].send(b"x")
    finally:
        mgr.close()
