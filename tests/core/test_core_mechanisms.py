"""The core mechanisms: call_soon_threadsafe, the signal stop, ListenError, return codes."""

import os
import signal
import socket
import threading
import time

import pytest

import cymongoose as cm
from cymongoose._signals import SignalStop, serve_until_signal
from support.loop import poll_until


def test_call_soon_runs_in_order_on_the_poll_thread():
    with cm.Manager(enable_wakeup=True) as mgr:
        ran = []
        for i in range(5):
            mgr.call_soon_threadsafe(lambda i=i: ran.append((i, threading.get_ident())))
        assert ran == []  # queued, never run inline
        mgr.poll(0)
        assert ran == [(i, threading.get_ident()) for i in range(5)]


def test_call_soon_from_another_thread_wakes_a_blocking_poll():
    with cm.Manager(enable_wakeup=True) as mgr:
        ran = []
        started = threading.Event()

        def producer() -> None:
            started.wait(10)
            for i in range(100):
                mgr.call_soon_threadsafe(ran.append, i)

        t = threading.Thread(target=producer)
        t.start()
        started.set()
        t0 = time.monotonic()
        while len(ran) < 100 and time.monotonic() - t0 < 20:
            mgr.poll(5000)  # returns early only because the doorbell rings
        t.join(10)
        assert ran == list(range(100))
        assert time.monotonic() - t0 < 15


def test_call_soon_queued_by_a_call_runs_at_the_next_poll():
    with cm.Manager(enable_wakeup=True) as mgr:
        ran = []

        def first() -> None:
            ran.append("first")
            mgr.call_soon_threadsafe(ran.append, "second")

        mgr.call_soon_threadsafe(first)
        mgr.poll(0)
        assert ran == ["first"]
        t0 = time.monotonic()
        mgr.poll(5000)  # the doorbell rang again: no 5 s wait
        assert ran == ["first", "second"]
        assert time.monotonic() - t0 < 4


def test_call_soon_errors_go_to_the_error_handler():
    errors = []
    with cm.Manager(enable_wakeup=True, error_handler=errors.append) as mgr:
        ran = []

        def boom() -> None:
            raise ValueError("boom")

        mgr.call_soon_threadsafe(boom)
        mgr.call_soon_threadsafe(ran.append, 1)
        mgr.poll(0)
        assert [str(e) for e in errors] == ["boom"]
        assert ran == [1]  # the next call still ran


def test_call_soon_keyboard_interrupt_is_reraised_by_poll():
    with cm.Manager(enable_wakeup=True) as mgr:
        def interrupt() -> None:
            raise KeyboardInterrupt

        mgr.call_soon_threadsafe(interrupt)
        with pytest.raises(KeyboardInterrupt):
            mgr.poll(0)
        mgr.poll(0)  # the Manager still works


def test_call_soon_runs_like_a_handler():
    with cm.Manager(enable_wakeup=True) as mgr:
        seen = []

        def inside() -> None:
            with pytest.raises(RuntimeError):
                mgr.poll(0)  # not reentrant, as in a handler
            seen.append(True)

        mgr.call_soon_threadsafe(inside)
        mgr.poll(0)
        assert seen == [True]


def test_call_soon_refused_on_a_closed_manager():
    mgr = cm.Manager(enable_wakeup=True)
    mgr.call_soon_threadsafe(print, "dropped")  # dropped by close()
    mgr.close()
    with pytest.raises(cm.MongooseError, match="freed"):
        mgr.call_soon_threadsafe(print)


def test_call_soon_works_without_enable_wakeup_which_stays_off_for_wakeup():
    ran = []
    with cm.Manager() as plain:
        assert plain.wakeup_id == 0
        first = plain.listen("tcp://127.0.0.1:0")
        assert first.id == 1  # the hidden pipe takes no connection id
        assert plain.wakeup(first.id, b"x") is False
        threading.Thread(target=plain.call_soon_threadsafe, args=(ran.append, 1)).start()
        poll_until(plain, lambda: ran)
    assert ran == [1]


def test_listen_error_is_a_mongoose_error_with_the_old_text():
    with cm.Manager() as mgr:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        port = lsn.local_addr[1]
        with pytest.raises(cm.ListenError, match="^Failed to listen on 'tcp://127.0.0.1:%d'$"
                           % port):
            mgr.listen("tcp://127.0.0.1:%d" % port)
        with pytest.raises(cm.ListenError):
            mgr.mqtt_listen("mqtt://127.0.0.1:%d" % port)
    assert issubclass(cm.ListenError, cm.MongooseError)
    assert issubclass(cm.LifespanError, cm.MongooseError)


def test_signal_stop_restores_the_previous_handlers():
    def mine(signum, frame):  # never called
        raise AssertionError

    old_int = signal.signal(signal.SIGINT, mine)
    try:
        steps = []

        def step() -> None:
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGTERM)

        stop = serve_until_signal(step)
        assert stop.received == [signal.SIGTERM]
        assert len(steps) >= 3
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, old_int)


def test_signal_stop_restores_after_an_exception_and_runs_cleanup():
    before = signal.getsignal(signal.SIGINT)
    cleaned = []

    def step() -> None:
        raise OSError("step failed")

    with pytest.raises(OSError):
        serve_until_signal(step, cleanup=lambda: cleaned.append(1))
    assert cleaned == [1]
    assert signal.getsignal(signal.SIGINT) is before


def test_signal_stop_off_the_main_thread():
    box = []

    def run() -> None:
        try:
            serve_until_signal(lambda: None, cleanup=lambda: box.append("cleanup"))
        except ValueError:
            box.append("ValueError")  # required: nothing installed, no cleanup
        stop = SignalStop(required=False)
        stop.set()  # only set() can stop it here
        serve_until_signal(lambda: None, stop=stop, cleanup=lambda: box.append("ran"))

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert box == ["ValueError", "ran"]


def test_query_var_too_big_is_a_value_error_through_the_return_code():
    got = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_MSG:
            try:
                data.query_var("a")
            except ValueError as exc:
                got.append(str(exc))
            got.append(data.query_var("b"))
            got.append(data.query_var("missing"))
            conn.reply(200, "ok")
            conn.drain()

    with cm.Manager(handler) as mgr:
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /?a=" + b"x" * 3000 + b"&b=%41z HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        while len(got) < 3 and time.monotonic() - t0 < 10:
            mgr.poll(50)
        s.close()
    assert got == ["Query parameter 'a' value exceeds 2048-byte buffer limit", "Az", None]
