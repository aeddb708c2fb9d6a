"""Leaks: 10,000 HTTP connections and 1,000 WebSocket sessions leave nothing behind.

After the run no ``Connection`` object is alive, the Manager tracks only
its listener, Mongoose's own list holds only the listener, and the
process's resident memory grew by less than 5 MiB after a warm-up.
Clients are raw sockets, keep-alive off, opened in batches.
"""

import gc
import os
import socket
import weakref

import cymongoose as cm
from support.hostile import mongoose_conns, rss_bytes
from support.loop import LoopThread, UNDER_ASAN, wait_until
from support.sockets import read_until, read_until_closed
from support.ws import OP_TEXT, frame

HTTP_CYCLES = 10_000
WS_SESSIONS = 1_000
WARM_HTTP, WARM_WS = 2_000, 200
BATCH = 100
MIB = 1024 * 1024
REQUEST = b"GET /leak HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class Server:
    def __init__(self) -> None:
        self.alive: "weakref.WeakSet[cm.Connection]" = weakref.WeakSet()
        self.served = 0
        # Only these events cross into Python: the test measures us, not POLL traffic.
        self.handler = cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG)(self.on)

    def on(self, conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_ACCEPT:
            self.alive.add(conn)
        elif ev == cm.MG_EV_HTTP_MSG:
            self.served += 1
            if data.uri == "/ws":  # type: ignore[attr-defined]
                conn.ws_upgrade(data)
            else:
                conn.reply(200, "x" * 64)
        else:
            conn.ws_send(data.data, cm.WEBSOCKET_OP_TEXT)  # type: ignore[attr-defined]


def http_batch(port: int, n: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for s in socks:
        s.sendall(REQUEST)
    for s in socks:
        got = read_until_closed(s)
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"x" * 64), got[:100]
        s.close()


def ws_batch(port: int, n: int) -> None:
    payload = os.urandom(16).hex().encode()
    echo = b"\x81" + bytes([len(payload)]) + payload
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for s in socks:
        s.sendall(UPGRADE + frame(OP_TEXT, payload))
    for s in socks:
        got = read_until(s, lambda got: got.endswith(echo))
        assert got.startswith(b"HTTP/1.1 101") and got.endswith(echo), got
        s.close()


def cycles(port: int, http: int, ws: int) -> None:
    for _ in range(http // BATCH):
        http_batch(port, BATCH)
    for _ in range(ws // (BATCH // 2)):
        ws_batch(port, BATCH // 2)


def settled(loop: LoopThread) -> bool:
    return loop.call(lambda: (loop.mgr.live_handles, mongoose_conns(loop.mgr))) == (1, 1)


def test_no_connection_handle_or_memory_left_behind():
    server = Server()
    mgr = cm.Manager(server.handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr, poll_ms=50).start()
    try:
        cycles(port, WARM_HTTP, WARM_WS)  # warm-up: allocator pools, caches, PyPy's JIT
        wait_until(lambda: settled(loop))
        for _ in range(2):  # PyPy collects lazily: measure live memory, not garbage
            gc.collect()
        before = rss_bytes()
        cycles(port, HTTP_CYCLES, WS_SESSIONS)
        wait_until(lambda: settled(loop))
        for _ in range(3):
            gc.collect()
        grown = rss_bytes() - before
        assert server.served == WARM_HTTP + WARM_WS + HTTP_CYCLES + WS_SESSIONS
        assert len(server.alive) == 0
        assert grown < 5 * MIB or UNDER_ASAN, "RSS grew by %.1f MiB" % (grown / MIB)
    finally:
        loop.stop()
        mgr.close()
    assert mgr.live_handles == 0
