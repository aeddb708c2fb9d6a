"""Graceful stop for ``Manager.run``: let in-flight responses finish.

After the stop signal ``finish_in_flight`` stops accepting (listeners
close), then keeps polling while a connection still has bytes to send or an
HTTP request it has not fully answered, for at most ``grace_ms`` or until a
second signal.
"""

import time
from typing import Any, List

from ._ffi import lib

_F_LISTENING = int(lib.CYM_F_LISTENING)
_F_RESP = int(lib.CYM_F_RESP)


def in_flight(conn: Any) -> bool:
    """Bytes queued to send, or a request whose response is not complete."""
    c = conn._c
    if c is None:
        return False
    return bool(c.send.len) or bool(lib.cym_flags(c) & _F_RESP)


def finish_in_flight(mgr: Any, stop: List[int], poll_ms: int, grace_ms: int) -> None:
    """Close listeners, then poll until nothing is in flight (bounded).

    ``stop`` lists the signals received so far; a second one ends the wait.
    ``grace_ms`` (already checked to be a non-negative int) bounds it.
    """
    if grace_ms <= 0:
        return
    deadline = time.monotonic() + grace_ms / 1000.0
    for conn in mgr.connections:
        if lib.cym_flags(conn._c) & _F_LISTENING:
            conn.close()
    step = max(1, min(int(poll_ms), 20))
    while len(stop) < 2 and time.monotonic() < deadline:
        if not any(in_flight(conn) for conn in mgr.connections):
            return
        mgr.poll(step)
