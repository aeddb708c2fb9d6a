"""Output that handlers queue during a poll leaves in that same poll, also now
that a poll which queued nothing skips the write burst (vendor patch 0083):
whatever connection it goes to, whether or not that connection's turn in
the poll had passed, and whoever queued it (an event handler of another
connection, a timer).  Handlers here are declared, so idle connections'
POLLs never cross into Python, as on the servers the patch is for.  Output
queued between polls leaves at the start of the next one, before any
connection is read (vendor patch 0084)."""

import contextlib
from typing import Any, Dict, Iterator, List, Tuple

import cymongoose as cm
from support.loop import poll_until
from support.sockets import connect


@contextlib.contextmanager
def clients(mgr: cm.Manager, count: int) -> Iterator[Tuple[Dict[int, Any], List[int]]]:
    """``count`` TCP clients of a listener of ``mgr``: socket by connection id."""
    socks: List[Any] = []
    try:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        socks.extend(connect(lsn.local_addr[1]) for _ in range(count))
        poll_until(mgr, lambda: len(mgr.connections) == count + 1)
        by_port = {s.getsockname()[1]: s for s in socks}
        by_id = {c.id: by_port[c.remote_addr[1]] for c in mgr.connections if not c.is_listening}
        for s in socks:
            s.settimeout(0)  # a recv below must find the data already there
        yield by_id, sorted(by_id)
    finally:
        for s in socks:
            s.close()


def test_what_a_read_handler_sends_to_another_connection_leaves_in_that_poll():
    got: List[int] = []
    target: List[cm.Connection] = []

    @cm.handles(cm.MG_EV_READ)
    def relay(conn: cm.Connection, ev: int, data: Any) -> None:
        got.append(conn.id)
        payload = conn.recv_data()
        conn.recv_consume()
        target[0].send(payload)

    with cm.Manager(relay) as mgr, clients(mgr, 5) as (socks, ids):
        conns = {c.id: c for c in mgr.connections}
        # From the middle one to each other one: accepted connections sit
        # before and after it in Mongoose's list, so for some targets the
        # turn in the poll has passed when the handler sends to them.
        sender = ids[2]
        for cid in ids:
            if cid == sender:
                continue
            target[:] = [conns[cid]]
            mgr.poll(0)  # an idle poll before each
            del got[:]
            socks[sender].sendall(b"hello %d" % cid)
            poll_until(mgr, lambda: got, poll_ms=0)
            assert socks[cid].recv(16) == b"hello %d" % cid  # no further poll needed


def test_what_a_timer_sends_leaves_in_the_poll_that_ran_it():
    with cm.Manager(cm.handles(cm.MG_EV_HTTP_MSG)(lambda c, ev, d: None)) as mgr, \
            clients(mgr, 3) as (socks, ids):
        conns = {c.id: c for c in mgr.connections}
        fired: List[int] = []

        def tick() -> None:
            fired.append(1)
            for cid in ids:
                conns[cid].send(b"tick")

        mgr.timer_add(1, tick)
        poll_until(mgr, lambda: fired, poll_ms=5)
        for cid in ids:
            assert socks[cid].recv(16) == b"tick"


def test_idle_polls_send_nothing_and_keep_connections_open():
    with cm.Manager(cm.handles(cm.MG_EV_HTTP_MSG)(lambda c, ev, d: None)) as mgr, \
            clients(mgr, 4) as (socks, ids):
        for _ in range(200):
            mgr.poll(0)
        for cid in ids:
            try:
                data = socks[cid].recv(16)
            except BlockingIOError:
                data = None
            assert data is None  # nothing sent, and not closed (b"")
        assert len(mgr.connections) == len(ids) + 1


def test_output_queued_between_polls_leaves_before_any_read():
    seen: List[Tuple[int, int]] = []

    @cm.handles(cm.MG_EV_READ, cm.MG_EV_WRITE)
    def record(conn: cm.Connection, ev: int, data: Any) -> None:
        seen.append((ev, conn.id))
        if ev == cm.MG_EV_READ:
            conn.recv_consume()

    with cm.Manager(record) as mgr, clients(mgr, 4) as (socks, ids):
        conns = {c.id: c for c in mgr.connections}
        # Mongoose walks its newest connection first, so without the write
        # pass the reads of the newer ones would come before this write.
        oldest, newer = ids[0], ids[1:]
        conns[oldest].send(b"queued between polls")
        for cid in newer:
            socks[cid].sendall(b"ping")
        poll_until(mgr, lambda: len([e for e in seen if e[0] == cm.MG_EV_READ]) == len(newer),
                   poll_ms=0)
        assert seen[0] == (cm.MG_EV_WRITE, oldest)
        assert socks[oldest].recv(64) == b"queued between polls"
