"""Slow and abrupt peers: trickled headers, resets, half-closed sockets, churn.

Fifty connections trickling one header byte every 200 ms must not slow a
normal client down; peers that reset mid-request or mid-response, or half
close after a full request, or thousands that connect and vanish, leave the
server serving and its bookkeeping exact.
"""

import socket
import threading
import time

import pytest

import cymongoose as cm
from support.hostile import Recorder, count_conns, mongoose_conns, served, settle
from support.http_raw import get_close, parse_response
from support.loop import LoopThread, wait_until
from support.sockets import connect, read_until_closed, reset

BIG = 8 * 1024 * 1024


@pytest.fixture
def server():
    rec = Recorder(big=BIG)
    mgr = cm.Manager(rec)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    yield rec, loop, port
    loop.stop()
    mgr.close()


class Trickler(threading.Thread):
    """Keeps ``n`` connections sending one header byte each every ``interval`` s."""

    def __init__(self, port: int, n: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.socks = [connect(port) for _ in range(n)]
        self.interval = interval
        self.stop = threading.Event()
        self.sent = 0
        self.data = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 4096

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            if self.sent >= len(self.data):
                break
            for s in self.socks:
                s.send(self.data[self.sent:self.sent + 1])
            self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        for s in self.socks:
            s.close()


def test_slow_header_trickle_does_not_delay_others(server):
    rec, loop, port = server
    slow = Trickler(port, 50, 0.2)
    slow.start()
    try:
        latencies = []
        deadline = time.monotonic() + 3.0  # 15 trickled bytes per slow connection
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert served(port)
            latencies.append(time.monotonic() - t0)
        assert slow.sent >= 10 and slow.is_alive()
        latencies.sort()
        assert latencies[-1] < 0.5, latencies[-5:]
        assert latencies[len(latencies) // 2] < 0.05, latencies[len(latencies) // 2]
        assert count_conns(loop) == 51  # the listener and the 50 slow ones
    finally:
        slow.close()
    settle(loop, 1)


@pytest.mark.parametrize("hang_up", [reset, socket.socket.close], ids=["RST", "FIN"])
def test_peer_gone_mid_body_never_delivers_a_cut_request(server, hang_up):
    """A request never ends at close: a body cut short is dropped with its connection."""
    rec, loop, port = server
    for _ in range(20):
        s = connect(port)
        s.sendall(b"POST /upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
                  + b"x" * 5000)
        hang_up(s)
    settle(loop, 1)
    wait_until(lambda: loop.call(lambda: mongoose_conns(loop.mgr)) == 1)
    assert rec.of(cm.MG_EV_HTTP_MSG) == []
    assert served(port)


def test_body_without_length_still_ends_at_close(server):
    """A body with neither Content-Length nor chunking ends at close, as HTTP says."""
    rec, loop, port = server
    with connect(port) as s:
        s.sendall(b"GET /noclen HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    settle(loop, 1)
    assert [uri for _, uri in rec.of(cm.MG_EV_HTTP_MSG)] == ["/noclen"]


def test_reset_mid_response(server):
    """A peer resets while an 8 MiB answer is still being written."""
    rec, loop, port = server
    for _ in range(5):
        s = connect(port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        reset(s)
    settle(loop, 1)
    assert served(port)
    assert loop.call(lambda: mongoose_conns(loop.mgr)) == 1


# /big: 8 MiB still queued at the peer's end of file are sent before the
# close (vendor/patches/0003; Mongoose alone drops them).
@pytest.mark.parametrize("path", ["/half", "/big"])
def test_half_closed_peer_still_gets_the_answer(server, path):
    """shutdown(SHUT_WR) after a full request: the answer still arrives."""
    rec, loop, port = server
    with connect(port) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        s.shutdown(socket.SHUT_WR)
        raw = read_until_closed(s, timeout=20)
    status, _, body = parse_response(raw)
    assert status == 200
    assert body == (b"ok /half" if path == "/half" else b"x" * BIG)
    settle(loop, 1)


def test_half_closed_with_keep_alive_pipeline(server):
    rec, loop, port = server
    with connect(port) as s:
        s.sendall(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        raw = read_until_closed(s)
    assert raw.count(b"HTTP/1.1 200 OK") == 2 and raw.endswith(b"ok /b")


def test_thousands_of_connections_opened_and_dropped(server):
    rec, loop, port = server
    for batch in range(20):
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(100)]
        for i, s in enumerate(socks):
            if i % 3 == 0:
                reset(s)
            elif i % 3 == 1:
                s.sendall(b"GET /x HTTP/1.1\r\n")  # half a request
                s.close()
            else:
                s.close()
    settle(loop, 1, timeout=20)
    assert loop.call(lambda: mongoose_conns(loop.mgr)) == 1
    assert len(rec.of(cm.MG_EV_ACCEPT)) == 2000
    assert len(rec.of(cm.MG_EV_CLOSE)) == 2000
    assert parse_response(get_close(port, "/after"))[2] == b"ok /after"
