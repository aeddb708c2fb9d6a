"""Serving until a signal: Manager.run(), the WSGI and the ASGI server stop on SIGINT/SIGTERM,
finish the responses in flight and restore the previous signal handlers."""

import signal
import socket
import threading
import time
from typing import Callable, Iterator

import httpx
import pytest

import cymongoose as cm
from support.fixtures import made
from support.subprocs import Proc, loop_server

BODY = bytes(i % 251 for i in range(251)) * (4 * 1024 * 1024 // 251)


@pytest.fixture
def server_process() -> Iterator[Callable[[str], Proc]]:
    """``server_process(mode)`` starts ``support/loop_server.py MODE``; all are killed at teardown."""
    yield from made(loop_server, Proc.kill)


def fetch_in_thread(port: int) -> "tuple[threading.Thread, list]":
    """GET / on a thread; the list receives the response or the exception."""
    box: list = []

    def get() -> None:
        try:
            box.append(httpx.get("http://127.0.0.1:%d/" % port, timeout=20))
        except Exception as exc:  # handed to the test
            box.append(exc)

    t = threading.Thread(target=get)
    t.start()
    return t, box


# Every way to serve until a signal: Manager.run() with the work inside the
# handler or behind a timer, the WSGI server on its workers, the ASGI server.
SERVERS = ["work", "later", "wsgi", "asgi"]
# What each server prints besides the common lines.
OWN_LINES = {"wsgi": ["  Workers: 2", "  Press Ctrl+C to stop"], "asgi": ["Server stopped."]}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", SERVERS)
def test_signal_exits_0_within_2s_and_in_flight_response_completes(server_process, mode, signum):
    # The signal lands while the response is still owed: during the handler's
    # work, while it waits for a timer, or while an application awaits.
    server = server_process(mode)
    client, box = fetch_in_thread(server.port)
    server.line("busy")
    server.p.send_signal(signum)
    start = time.monotonic()
    assert server.p.wait(timeout=5) == 0, server.output
    assert time.monotonic() - start < 2.0
    stopped = server.line("stopped")
    # Every server puts the previous SIGINT/SIGTERM handlers back.
    assert "restored=True" in stopped, server.output
    if mode not in ("wsgi", "asgi"):
        assert stopped.endswith("closed=True"), server.output
    lines = server.output.splitlines()
    for line in OWN_LINES.get(mode, []):
        assert line in lines, server.output
    assert "Traceback" not in server.output, server.output
    client.join(20)
    assert len(box) == 1 and not isinstance(box[0], Exception), box
    assert box[0].status_code == 200
    assert box[0].content == BODY


def test_sigterm_stops_an_idle_server(server_process):
    server = server_process("idle")
    assert httpx.get("http://127.0.0.1:%d/" % server.port, timeout=10).text == "ok"
    server.p.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert server.p.wait(timeout=5) == 0
    assert time.monotonic() - start < 2.0
    assert server.line("stopped") == "stopped restored=True closed=True"


def test_run_restores_the_identical_previous_handlers_and_closes():
    def mine(signum, frame):
        raise AssertionError("must not be called")

    previous_int = signal.signal(signal.SIGINT, mine)
    previous_term = signal.getsignal(signal.SIGTERM)
    try:
        mgr = cm.Manager()
        mgr.listen("tcp://127.0.0.1:0")
        installed = []

        def fire():
            installed.append(signal.getsignal(signal.SIGINT))
            signal.raise_signal(signal.SIGINT)

        mgr.timer_add(50, fire)
        start = time.monotonic()
        mgr.run(poll_ms=20)
        assert time.monotonic() - start < 2.0
        assert installed and installed[0] is not mine
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is previous_term
        assert mgr.connections == ()
        with pytest.raises(RuntimeError, match="Manager has been freed"):
            mgr.poll(0)
    finally:
        signal.signal(signal.SIGINT, previous_int)


def test_run_off_the_main_thread_raises_value_error_and_keeps_manager_open():
    mgr = cm.Manager()
    try:
        box = []

        def off_main():
            try:
                mgr.run()
            except Exception as exc:  # handed to the test
                box.append(exc)

        t = threading.Thread(target=off_main)
        t.start()
        t.join(10)
        assert len(box) == 1 and isinstance(box[0], ValueError)
        mgr.poll(0)  # still open
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        mgr.close()


def test_exception_from_poll_restores_handlers_closes_and_propagates():
    mgr = cm.Manager()

    def interrupt():
        raise KeyboardInterrupt

    mgr.timer_add(20, interrupt)
    with pytest.raises(KeyboardInterrupt):
        mgr.run(poll_ms=20)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        mgr.poll(0)


def test_grace_period_is_bounded_for_a_request_never_answered():
    mgr = cm.Manager()
    seen = []

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def never_answer(conn, ev, hm):
        seen.append(1)
        signal.raise_signal(signal.SIGINT)

    listener = mgr.listen("http://127.0.0.1:0", never_answer)
    port = listener.local_addr[1]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        mgr.run(poll_ms=20, grace_ms=300)
        elapsed = time.monotonic() - start
        assert seen == [1]
        assert 0.25 <= elapsed < 2.0  # waited for the grace period, then gave up
        assert sock.recv(100) == b""  # closed without an answer
    finally:
        sock.close()


def test_grace_ms_zero_closes_at_once_and_bad_values_raise():
    mgr = cm.Manager()
    with pytest.raises(OverflowError):
        mgr.run(grace_ms=-1)
    with pytest.raises(TypeError):
        mgr.run(grace_ms="1")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    mgr.timer_add(10, lambda: signal.raise_signal(signal.SIGTERM))
    start = time.monotonic()
    mgr.run(poll_ms=20, grace_ms=0)
    assert time.monotonic() - start < 2.0
