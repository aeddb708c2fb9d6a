"""Once the application closes a connection (or an error does), data already
buffered for it never reaches the handler: only MG_EV_CLOSE does."""

import threading
from typing import Any, List, Tuple

import cymongoose as cm
from support.loop import wait_until
from support.sockets import connect, read_until_closed
from support.ws import OP_TEXT, RawClient, frame

DATA_EVENTS = (cm.MG_EV_READ, cm.MG_EV_HTTP_HDRS, cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG,
               cm.MG_EV_MQTT_MSG)


class Closer:
    """Records events per connection; closes on the first message it sees."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.events: List[Tuple[int, int]] = []
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if conn.is_listening:
            return
        with self.lock:
            self.events.append((conn.id, ev))
        if ev == cm.MG_EV_HTTP_MSG and self.first == cm.MG_EV_WS_MSG:
            conn.ws_upgrade(data)
        elif ev == self.first:
            conn.close()
        elif ev == cm.MG_EV_CLOSE:
            self.closed.set()

    def after_first(self) -> List[int]:
        with self.lock:
            evs = [ev for _, ev in self.events]
        return evs[evs.index(self.first) + 1:]


def test_pipelined_requests_after_close_never_arrive(server_factory):
    closer = Closer(cm.MG_EV_HTTP_MSG)
    _, port = server_factory(closer)
    with connect(port) as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n" * 5)
        read_until_closed(sock, 10)
    assert closer.closed.wait(10)
    assert [ev for ev in closer.after_first() if ev in DATA_EVENTS] == []


def test_buffered_websocket_frames_after_close_never_arrive(server_factory):
    closer = Closer(cm.MG_EV_WS_MSG)
    _, port = server_factory(closer)
    raw = RawClient(port)
    try:
        raw.sock.sendall(b"".join(frame(OP_TEXT, b"m%d" % i) for i in range(20)))
        assert closer.closed.wait(10)
    finally:
        raw.close()
    assert [ev for ev in closer.after_first() if ev in DATA_EVENTS] == []
    assert cm.MG_EV_CLOSE in closer.after_first()


def test_raw_tcp_data_after_close_in_a_read_handler(server_factory):
    reads = []
    done = threading.Event()

    def handler(conn: Any, ev: int, data: Any) -> None:
        if conn.is_listening:
            return
        if ev == cm.MG_EV_READ:
            reads.append(conn.recv_len)
            conn.close()
        elif ev == cm.MG_EV_CLOSE:
            done.set()

    _, port = server_factory(handler, url="tcp://127.0.0.1:0")
    with connect(port) as sock:
        sock.sendall(b"x" * 100)
        assert done.wait(10)
        wait_until(lambda: reads)
    assert len(reads) == 1


SERVER_WITH_FEW_FDS = r"""
import logging, resource, sys, cymongoose as cm
resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(message)s")
cm.log_set(cm.MG_LL_ERROR)
@cm.handles(cm.MG_EV_HTTP_MSG)
def h(c, ev, hm):
    c.reply(200, b"ok")
mgr = cm.Manager(h)
print(mgr.listen("http://127.0.0.1:0").local_addr[1], flush=True)
while True:
    mgr.poll(100)
"""


def test_running_out_of_descriptors_neither_spins_nor_floods_the_log():
    import os
    import subprocess
    import sys
    import time

    from support.subprocs import child_env

    proc = subprocess.Popen([sys.executable, "-c", SERVER_WITH_FEW_FDS], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    socks = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(80):  # twice what the server may hold
            socks.append(connect(port))
        with open("/proc/%d/stat" % proc.pid) as f:
            before = sum(int(x) for x in f.read().split()[13:15])
        start = time.monotonic()
        for s in socks[-5:]:  # these met EMFILE: accepted and closed at once
            assert read_until_closed(s, 10) == b""
        time.sleep(1.0)  # measuring a busy loop needs a stretch of time
        with open("/proc/%d/stat" % proc.pid) as f:
            used = (sum(int(x) for x in f.read().split()[13:15]) - before) / os.sysconf("SC_CLK_TCK")
        elapsed = time.monotonic() - start
        assert used < 0.5 * elapsed, "the loop spins: %.2f s CPU in %.2f s" % (used, elapsed)
        for s in socks:
            s.close()
        socks = []
        with connect(port) as s:  # descriptors are back: served again
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_closed(s, 10).endswith(b"ok")
    finally:
        for s in socks:
            s.close()
        proc.kill()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if "out of file descriptors" in line]
    assert 1 <= len(lines) <= 1 + elapsed + 1, err[-2000:]
