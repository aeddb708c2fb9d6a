"""Backpressure: a producer bounded by send_len, drain(), is_full.

The pattern itself is documented in docs/threading-and-asyncio.md.
"""

import signal
import socket
import time

import pytest

import cymongoose as cm
from support.loop import LoopThread, UNDER_ASAN, wait_until
from support.sockets import read_until_closed
from support.subprocs import loop_server

TOTAL = 50 * 1024 * 1024
PATTERN = bytes(i % 251 for i in range(251)) * (65536 // 251 + 2)


@pytest.fixture
def producer():
    server = loop_server("producer")
    yield server
    server.kill()


def read_slowly(port: int) -> "tuple[int, int]":
    """Read the whole stream slowly; returns (bytes received, first bad offset or -1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    received, bad, next_pause = 0, -1, 1 << 20
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received, bad
            start = received % 251
            if bad < 0 and chunk != PATTERN[start:start + len(chunk)]:
                bad = received
            received += len(chunk)
            if received >= next_pause:  # a slow reader: ~20 ms per MiB
                next_pause += 1 << 20
                time.sleep(0.02)
    finally:
        sock.close()


def test_producer_streams_50mib_to_slow_client_with_bounded_memory(producer):
    base_kb = int(producer.line("listening").split("base_kb=")[1])
    received, bad = read_slowly(producer.port)
    assert received == TOTAL
    assert bad == -1, "corrupted at offset %d" % bad
    done = dict(kv.split("=") for kv in producer.line("done").split()[1:])
    assert int(done["sent"]) == TOTAL
    # The send buffer never held much more than the high-water mark (1 MiB)
    # plus one chunk, and the process grew by far less than the stream.
    assert int(done["max_send_len"]) <= (1 << 20) + 65536
    growth_mib = (int(done["hwm_kb"]) - base_kb) / 1024
    assert growth_mib < 16 or UNDER_ASAN, "peak RSS grew by %.1f MiB" % growth_mib
    producer.p.send_signal(signal.SIGTERM)
    assert producer.p.wait(timeout=5) == 0


def test_drain_flushes_queued_data_then_closes():
    events = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_ACCEPT:
            conn.send(b"a" * 300_000)
            conn.drain()
            events.append(("draining", conn.is_draining, conn.is_closing))
        elif ev == cm.MG_EV_CLOSE:
            events.append(("closed", conn.send_len))

    mgr = cm.Manager()
    listener = mgr.listen("tcp://127.0.0.1:0", handler)
    port = listener.local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        got = read_until_closed(sock)
        sock.close()
        assert got == b"a" * 300_000
        wait_until(lambda: len(events) == 2)
        assert events == [("draining", True, False), ("closed", 0)]
    finally:
        loop.stop()
        mgr.close()


def test_drain_and_is_full_on_closed_and_live_connections():
    conn = cm.Connection()
    conn.drain()  # no-op when closed
    assert conn.is_full is False and conn.is_draining is False
    mgr = cm.Manager()
    try:
        listener = mgr.listen("tcp://127.0.0.1:0")
        # Mongoose sets is_full only when asked to pause reads; never on its own.
        assert listener.is_full is False
    finally:
        mgr.close()
