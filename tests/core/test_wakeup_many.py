"""Wakeups among many connections: the poll thread finds each payload's
target by id in an index (_csrc/conn_index.c) kept on open and close, so a
payload reaches the right one of thousands, and one for a connection that
closed meanwhile is dropped without touching its freed memory (run under
`make test-asan` too)."""

import random
import resource
import socket
import threading

import cymongoose as cm
from support.loop import InThread, LoopThread, poll_until

CONNS = 2400  # the index grows to 4,096 slots


class Box:
    """One Manager holding CONNS UDP connections (one descriptor each, no peers)."""

    def __init__(self) -> None:
        self.got = []  # (id, payload) in delivery order
        self.closed = set()
        self.late = []  # payloads delivered to a connection after its CLOSE
        self.mgr = cm.Manager(self.handler, enable_wakeup=True)
        self.lsn = self.mgr.listen("tcp://127.0.0.1:0")
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        url = "udp://127.0.0.1:%d" % self.sink.getsockname()[1]
        self.conns = [self.mgr.connect(url) for _ in range(CONNS)]

    def handler(self, conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            if conn.id in self.closed:
                self.late.append(conn.id)
            self.got.append((conn.id, data))
        elif ev == cm.MG_EV_CLOSE:
            self.closed.add(conn.id)

    def close(self) -> None:
        self.mgr.close()
        self.sink.close()


def _enough_descriptors(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        assert hard == resource.RLIM_INFINITY or hard >= n, (
            "the test needs %d descriptors; the hard limit is %d" % (n, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def _send_from_thread(mgr, ids, tag: bytes) -> None:
    def send():
        for cid in ids:
            assert mgr.wakeup(cid, b"%s:%d" % (tag, cid)) is True
    InThread(send).result(30)


def test_each_of_many_connections_gets_its_own_payloads_and_closed_ones_none():
    _enough_descriptors(CONNS + 200)
    box = Box()
    try:
        ids = [c.id for c in box.conns]  # a closed Connection's id reads 0
        rng = random.Random(23)
        # Close a scattered third, outside the poll: each is freed at once.
        gone = rng.sample(range(CONNS), CONNS // 3)
        for i in gone:
            box.conns[i].close()
        gone_ids = {ids[i] for i in gone}
        live = [cid for cid in ids if cid not in gone_ids]
        assert gone_ids <= box.closed
        rng.shuffle(ids)
        # Sent from another thread, then a last one to the listener: payloads
        # are delivered in order, so once it arrived every other one was seen.
        _send_from_thread(box.mgr, ids + [box.lsn.id], b"a")
        poll_until(box.mgr, lambda: box.got and box.got[-1][0] == box.lsn.id)
        want = sorted((cid, b"a:%d" % cid) for cid in live)
        assert sorted(box.got[:-1]) == want
        assert len(box.got) == len(live) + 1

        # Most of the rest close (the index shrinks); the survivors still get theirs.
        box.got.clear()
        keep, drop = live[:40], set(live[40:])
        for conn in box.conns:
            if conn.id in drop:
                conn.close()
        _send_from_thread(box.mgr, ids + [box.lsn.id], b"b")
        poll_until(box.mgr, lambda: box.got and box.got[-1][0] == box.lsn.id)
        assert sorted(box.got[:-1]) == sorted((cid, b"b:%d" % cid) for cid in keep)
        assert box.late == []
    finally:
        box.close()


def test_payload_for_a_connection_closed_after_it_was_sent_is_dropped():
    mgr_got = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            mgr_got.append((conn.id, data))

    mgr = cm.Manager(handler, enable_wakeup=True)
    try:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        url = "tcp://127.0.0.1:%d" % lsn.local_addr[1]
        first, second = mgr.connect(url), mgr.connect(url)
        _send_from_thread(mgr, [first.id, second.id], b"x")
        first.close()  # after the send, before the poll that delivers it
        third = mgr.connect(url)  # a new connection takes a new id, never the old one
        assert third.id not in (first.id, second.id)
        poll_until(mgr, lambda: mgr_got)
        assert mgr_got == [(second.id, b"x:%d" % second.id)]
    finally:
        mgr.close()


def test_closing_while_another_thread_sends():
    """Connections close on the poll thread while a sender aims at them."""
    _enough_descriptors(600)
    events = []  # (kind, id) in the order the poll thread saw them
    ended = threading.Event()

    def handler(conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            events.append(("wake", conn.id))
            if data == b"end":
                ended.set()
        elif ev == cm.MG_EV_CLOSE:
            events.append(("close", conn.id))

    mgr = cm.Manager(handler, enable_wakeup=True)
    loop = None
    try:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        url = "tcp://127.0.0.1:%d" % lsn.local_addr[1]
        conns = [mgr.connect(url) for _ in range(200)]
        loop = LoopThread(mgr, poll_ms=1).start()
        stop = threading.Event()

        ids = [c.id for c in conns]  # a closed Connection's id reads 0

        def send():
            n = 0
            while not stop.is_set() and n < 200_000:
                for cid in ids:
                    mgr.wakeup(cid, b"y")
                    n += 1
            return n

        closing_ids = ids[:150]
        sender = InThread(send)
        for conn in conns[:150]:
            loop.call(conn.close)
        stop.set()
        assert sender.result(30) > 0
        marker = ids[-1]
        mgr.wakeup(marker, b"end")
        assert ended.wait(30)
    finally:
        if loop is not None:
            loop.stop()
        mgr.close()
    closed_at = {}
    for i, (kind, cid) in enumerate(events):
        if kind == "close":
            closed_at.setdefault(cid, i)
    late = [cid for i, (kind, cid) in enumerate(events)
            if kind == "wake" and cid in closed_at and i > closed_at[cid]]
    assert late == []
    assert set(closing_ids) <= set(closed_at)
