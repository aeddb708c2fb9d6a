"""MG_EV_POLL for a handler that wants it: each connection gets one per
poll, with ``None``, before its other events of that poll, and what a POLL
handler sends leaves in the same poll (patch 0081's write burst).  The
POLLs of connections with nothing to read or write reach Python as a batch
(``_csrc/core.c``); these tests hold for both kinds."""

import contextlib
import threading
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import cymongoose as cm
from support.loop import poll_until
from support.sockets import connect
from support.ws import OP_BINARY, RawClient, frame


class Recorder:
    def __init__(self) -> None:
        self.events: List[Tuple[int, int, Any]] = []
        self.tick: List[cm.Connection] = []
        self.lock = threading.Lock()

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        with self.lock:
            self.events.append((conn.id, ev, data))
        if ev == cm.MG_EV_POLL and conn in self.tick:
            self.tick.remove(conn)
            conn.send(b"tick")

    def take(self) -> List[Tuple[int, int, Any]]:
        with self.lock:
            out, self.events = self.events, []
        return out


@contextlib.contextmanager
def started(count: int, handler: Any = None, error_handler: Any = None,
            ) -> Iterator[Tuple[cm.Manager, Recorder, List[Any], List[int]]]:
    """A Manager polled on this thread, with ``count`` idle TCP clients; its
    handler is a Recorder unless one is given."""
    rec = Recorder()
    mgr = cm.Manager(handler or rec, error_handler=error_handler)
    socks: List[Any] = []
    try:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        socks.extend(connect(lsn.local_addr[1]) for _ in range(count))
        poll_until(mgr, lambda: len(mgr.connections) == count + 1)
        ids = [c.id for c in mgr.connections if not c.is_listening]
        yield mgr, rec, socks, ids
    finally:
        for s in socks:
            s.close()
        mgr.close()


def test_every_connection_gets_one_poll_per_poll_with_none():
    with started(5) as (mgr, rec, _, _):
        rec.take()
        mgr.poll(0)
        polls = [(cid, data) for cid, ev, data in rec.take() if ev == cm.MG_EV_POLL]
        assert sorted(cid for cid, _ in polls) == sorted(c.id for c in mgr.connections)
        assert all(data is None for _, data in polls)


def test_a_connections_poll_comes_before_its_read_in_the_same_poll():
    with started(3) as (mgr, rec, socks, _):
        rec.take()
        socks[1].sendall(b"data")
        seen: List[Tuple[int, int, Any]] = []

        def read_seen() -> bool:
            seen.extend(rec.take())
            return any(ev == cm.MG_EV_READ for _, ev, _ in seen)

        poll_until(mgr, read_seen, poll_ms=0)
        reader = next(cid for cid, ev, _ in seen if ev == cm.MG_EV_READ)
        mine = [ev for cid, ev, _ in seen if cid == reader and ev in (cm.MG_EV_POLL, cm.MG_EV_READ)]
        # the poll that read the data raised its POLL first
        assert mine[-2:] == [cm.MG_EV_POLL, cm.MG_EV_READ]


def test_what_a_poll_handler_sends_leaves_in_the_same_poll():
    with started(2) as (mgr, rec, socks, ids):
        conn = next(c for c in mgr.connections if c.id == ids[0])
        rec.tick.append(conn)
        mgr.poll(0)
        assert not rec.tick  # the POLL ran in that poll
        socks_by_port = {s.getsockname()[1]: s for s in socks}
        sock = socks_by_port[conn.remote_addr[1]]
        sock.settimeout(0)
        assert sock.recv(16) == b"tick"  # already sent: no second poll needed


def test_an_exception_in_one_poll_handler_does_not_cost_the_others_their_poll():
    errors: List[BaseException] = []
    seen: List[int] = []
    bad: List[int] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_POLL and not conn.is_listening:
            seen.append(conn.id)
            if conn.id in bad:
                raise ValueError("poll %d" % conn.id)

    with started(6, handler, errors.append) as (mgr, _, _, ids):
        bad.append(ids[0])
        for _ in range(3):
            del seen[:], errors[:]
            mgr.poll(0)
            assert sorted(seen) == sorted(ids)
            assert [str(e) for e in errors] == ["poll %d" % ids[0]]


def test_a_keyboard_interrupt_in_a_poll_handler_is_raised_by_poll_after_the_others():
    seen: List[int] = []
    stop: List[int] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_POLL and not conn.is_listening:
            seen.append(conn.id)
            if stop and stop[0] == conn.id:
                del stop[:]
                raise KeyboardInterrupt

    with started(4, handler) as (mgr, _, _, ids):
        mgr.poll(0)
        del seen[:]
        stop.append(ids[1])
        with pytest.raises(KeyboardInterrupt):
            mgr.poll(0)
        assert sorted(seen) == sorted(ids)  # the others still had theirs
        del seen[:]
        mgr.poll(0)
        assert sorted(seen) == sorted(ids)


def test_a_connection_closed_by_its_poll_handler_closes_within_a_few_polls():
    with started(3) as (mgr, rec, _, ids):
        victim = next(c for c in mgr.connections if c.id == ids[0])
        closed: List[int] = []

        def handler(conn: cm.Connection, ev: int, data: Any) -> None:
            if ev == cm.MG_EV_POLL and conn is victim:
                conn.close()
            elif ev == cm.MG_EV_CLOSE:
                closed.append(conn.id)

        victim.set_handler(handler)
        poll_until(mgr, lambda: closed, poll_ms=0)
        assert closed == [ids[0]]
        assert sorted(c.id for c in mgr.connections if not c.is_listening) == sorted(ids[1:])


def test_polls_and_websocket_messages_of_one_poll_keep_each_connections_order():
    """A plain handler on a WebSocket server, with some clients busy and
    others idle: in every poll each connection gets one POLL, before its
    messages of that poll, and every message is answered."""
    log: List[Tuple[int, int]] = []  # (connection id, event); (0, 0) starts a poll
    lock = threading.Lock()

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            with lock:
                log.append((conn.id, ev))
            conn.ws_send(data.data, cm.WEBSOCKET_OP_BINARY)
        elif ev == cm.MG_EV_POLL and conn.is_websocket:
            with lock:
                log.append((conn.id, ev))

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with lock:
                log.append((0, 0))
            mgr.poll(2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    raws: List[RawClient] = []
    try:
        raws.extend(RawClient(port) for _ in range(6))
        for rnd in range(20):
            busy = raws[rnd % 3:rnd % 3 + 2]  # two busy, the rest idle
            for r in busy:
                r.send(b"".join(frame(OP_BINARY, b"m%d" % i) for i in range(3)))
            for r in busy:
                assert [r.read_frame()[1] for _ in range(3)] == [b"m0", b"m1", b"m2"]
    finally:
        stop.set()
        thread.join(10)
        with lock:
            log.append((0, 0))
            log.append((-1, 0))  # what close() raises is not looked at
        for r in raws:
            r.close()
        mgr.close()
    assert not thread.is_alive()
    polls = msgs = 0
    seen: Dict[int, int] = {}  # this poll: 1 after the POLL, 2 after a message
    for cid, ev in log[:log.index((-1, 0))]:
        if ev == 0:
            seen = {}
        elif ev == cm.MG_EV_POLL:
            assert cid not in seen  # one POLL per poll, before the messages
            seen[cid] = 1
            polls += 1
        else:
            assert seen.get(cid) in (1, 2)
            seen[cid] = 2
            msgs += 1
    assert msgs == 20 * 2 * 3 and polls > msgs
