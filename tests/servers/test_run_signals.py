"""Manager.run(): stops on SIGINT/SIGTERM, finishes in-flight responses (spec 3.5)."""

import signal
import socket
import threading
import time

import httpx
import pytest

import cymongoose as cm
from support.loop_process import ServerProcess

BODY = bytes(i % 251 for i in range(251)) * (4 * 1024 * 1024 // 251)


@pytest.fixture
def server_process():
    started = []

    def start(mode: str) -> ServerProcess:
        server = ServerProcess(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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


@pytest.mark.parametrize("mode", ["work", "later"])
def test_sigint_exits_0_within_2s_and_in_flight_response_completes(server_process, mode):
    # "work": the signal lands while the handler works; "later": while the
    # response waits for a timer.  Either way the response is still owed.
    server = server_process(mode)
    client, box = fetch_in_thread(server.port)
    server.expect("busy")
    server.proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - start < 2.0
    assert server.expect("stopped") == "stopped restored=True closed=True"
    client.join(20)
    assert len(box) == 1 and not isinstance(box[0], Exception), box
    assert box[0].status_code == 200
    assert box[0].content == BODY


def test_sigterm_stops_an_idle_server(server_process):
    server = server_process("idle")
    assert httpx.get("http://127.0.0.1:%d/" % server.port, timeout=10).text == "ok"
    server.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - start < 2.0
    assert server.expect("stopped") == "stopped restored=True closed=True"


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
