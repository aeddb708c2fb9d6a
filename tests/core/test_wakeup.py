"""Cross-thread wakeups: Manager.wakeup, wakeup_id, MG_EV_WAKEUP.

Payloads of any size arrive whole, however many datagrams they take.
"""

import hashlib
import threading
import time

import pytest

import cymongoose as cm
from support.loop import LoopThread, wait_until


class Inbox:
    """A listener whose handler records the wakeup payloads it receives."""

    def __init__(self) -> None:
        self.got = []
        self.types = set()
        self.mgr = cm.Manager(self.handler, enable_wakeup=True)
        self.conn = self.mgr.listen("tcp://127.0.0.1:0")

    def handler(self, conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            self.types.add(type(data))
            self.got.append(data)


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.mgr.close()


def payload(sender: int, seq: int) -> bytes:
    """Distinct, self-checking payloads; every 250th is larger than a datagram."""
    head = b"%d:%d:" % (sender, seq)
    body = hashlib.sha256(head).digest() * (1 + (sender * 7 + seq) % 40)
    if seq % 250 == 0:
        body = body * (100_000 // len(body) + 1)
    return head + body


def test_ten_threads_times_1000_wakeups_all_arrive_uncorrupted(inbox):
    loop = LoopThread(inbox.mgr, poll_ms=50).start()
    try:
        start = threading.Barrier(10)
        results = []

        def sender(n):
            start.wait()
            results.append(all(inbox.mgr.wakeup(inbox.conn.id, payload(n, i))
                               for i in range(1000)))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [True] * 10
        wait_until(lambda: len(inbox.got) >= 10_000, timeout=60)
    finally:
        loop.stop()
    assert len(inbox.got) == 10_000
    assert inbox.types == {bytes}
    next_seq = [0] * 10
    for data in inbox.got:
        sender, seq = (int(x) for x in data.split(b":", 2)[:2])
        assert seq == next_seq[sender], "out of order for sender %d" % sender
        next_seq[sender] += 1
        assert data == payload(sender, seq)
    assert next_seq == [1000] * 10


@pytest.mark.parametrize("size", [0, 1, 65_536, 1 << 20, 8 << 20])
def test_payload_of_any_size_arrives_whole(inbox, size):
    data = hashlib.sha256(b"x").digest() * (size // 32) + b"z" * (size % 32)
    assert inbox.mgr.wakeup(inbox.conn.id, data) is True
    inbox.mgr.poll(100)
    assert inbox.got == [data]
    assert type(inbox.got[0]) is bytes


def test_order_and_separate_events_from_one_thread(inbox):
    for i in range(100):
        inbox.mgr.wakeup(inbox.conn.id, b"%d" % i)
    inbox.mgr.poll(100)
    assert inbox.got == [b"%d" % i for i in range(100)]


def test_wakeup_from_a_handler_is_delivered():
    got = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            got.append(data)
            if data == b"ping":
                mgr.wakeup(conn.id, b"pong")

    mgr = cm.Manager(handler, enable_wakeup=True)
    try:
        conn = mgr.listen("tcp://127.0.0.1:0")
        mgr.wakeup(conn.id, b"ping")
        mgr.poll(100)
        assert got[:1] == [b"ping"]
        mgr.poll(100)  # "pong" arrives in the same poll or the next
        assert got == [b"ping", b"pong"]
    finally:
        mgr.close()


def test_waking_wakeup_id_interrupts_a_blocking_poll_without_user_event(inbox):
    events = []
    inbox.mgr._handler = lambda conn, ev, data: events.append(ev)
    inbox.mgr.poll(0)
    entered = threading.Event()

    def waker():
        entered.wait(10)
        inbox.mgr.wakeup(inbox.mgr.wakeup_id)

    t = threading.Thread(target=waker)
    t.start()
    start = time.monotonic()
    entered.set()
    inbox.mgr.poll(5000)
    elapsed = time.monotonic() - start
    t.join(10)
    assert elapsed < 2.0
    assert cm.MG_EV_WAKEUP not in events


def test_wakeup_interrupts_a_blocking_poll_and_delivers(inbox):
    sent = threading.Event()

    def waker():
        sent.wait(10)
        inbox.mgr.wakeup(inbox.conn.id, b"hello")

    t = threading.Thread(target=waker)
    t.start()
    start = time.monotonic()
    sent.set()
    while not inbox.got and time.monotonic() - start < 5:
        inbox.mgr.poll(5000)
    t.join(10)
    assert inbox.got == [b"hello"]
    assert time.monotonic() - start < 2.0


def test_return_values():
    mgr = cm.Manager()
    try:
        assert mgr.wakeup_id == 0
        assert mgr.wakeup(1, b"x") is False  # wakeup disabled
    finally:
        mgr.close()
    box = Inbox()
    try:
        assert box.mgr.wakeup_id > 0
        assert box.mgr.wakeup(0, b"x") is False
        assert box.mgr.wakeup(999_999, b"nobody") is True  # dropped silently
        box.mgr.poll(50)
        assert box.got == []
    finally:
        box.mgr.close()


def test_pipe_is_not_a_connection(inbox):
    inbox.mgr.poll(0)
    ids = [c.id for c in inbox.mgr.connections]
    assert inbox.mgr.wakeup_id not in ids
    assert ids == [inbox.conn.id]


def test_argument_types(inbox):
    class Sub(bytes):
        pass

    for bad in ("text", bytearray(b"x"), memoryview(b"x"), None, 5):
        with pytest.raises(TypeError):
            inbox.mgr.wakeup(inbox.conn.id, bad)
    with pytest.raises(OverflowError):
        inbox.mgr.wakeup(-1, b"x")
    with pytest.raises(TypeError):
        inbox.mgr.wakeup("1", b"x")
    assert inbox.mgr.wakeup(inbox.conn.id, Sub(b"sub")) is True
    assert inbox.mgr.wakeup(inbox.conn.id) is True  # default b""
    inbox.mgr.poll(50)
    assert inbox.got == [b"sub", b""]


def test_after_close_raises_and_wakeup_id_stays():
    box = Inbox()
    wid = box.mgr.wakeup_id
    box.mgr.close()
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        box.mgr.wakeup(box.conn.id, b"x")
    assert box.mgr.wakeup_id == wid


def test_undelivered_payloads_are_discarded_on_close():
    box = Inbox()
    for _ in range(10):
        box.mgr.wakeup(box.conn.id, b"x" * 100_000)
    box.mgr.close()
    assert box.got == []


def test_close_while_other_threads_send():
    box = Inbox()
    loop = LoopThread(box.mgr, poll_ms=5).start()
    stop = threading.Event()
    outcomes = []

    def sender():
        ok = 0
        while True:
            after_close = stop.is_set()  # set once close() has returned
            try:
                assert box.mgr.wakeup(box.conn.id, b"y" * 1000) is True
            except RuntimeError as exc:
                outcomes.append((ok, str(exc)))
                return
            if after_close:  # the call must have raised; also bounds the loop
                outcomes.append((ok, "accepted after close"))
                return
            ok += 1

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(box.got) > 100)
    loop.stop()
    box.mgr.close()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(outcomes) == 4
    assert all(msg == "Manager has been freed" for _, msg in outcomes), outcomes
