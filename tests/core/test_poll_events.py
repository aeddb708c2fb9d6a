"""MG_EV_POLL for a handler that wants it: each connection gets one per
poll, with ``None``, before its other events of that poll, and what a POLL
handler sends leaves in the same poll (patch 0081's write burst)."""

import contextlib
import threading
from typing import Any, Iterator, List, Tuple

import cymongoose as cm
from support.loop import poll_until
from support.sockets import connect


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
def started(count: int) -> Iterator[Tuple[cm.Manager, Recorder, List[Any], List[int]]]:
    """A Manager polled on this thread, with ``count`` idle TCP clients."""
    rec = Recorder()
    mgr = cm.Manager(rec)
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
