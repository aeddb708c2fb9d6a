"""Per-event cost of idle connections: time per poll / connections.

    python idle.py none|plain|declared PORT N POLLS

Listens, prints READY, waits until N connections are accepted (the runner
opens them and keeps them idle), then times batches of POLLS calls of
``poll(0)`` until two in a row agree within 3% (at most 8) and prints
``RESULT <ns per connection per poll>`` of the last.  Every poll raises one
MG_EV_POLL per connection: ``none`` has no handler at all, ``plain`` is
``def h(c, ev, d): pass`` (every event crosses into Python), ``declared``
wants only MG_EV_HTTP_MSG (POLL should cost no Python call).
"""

import sys
import time

import cymongoose
from cymongoose import MG_EV_HTTP_MSG, Manager

from _common import raise_fd_limit, ready, usage


def plain(conn, ev, data):
    pass


def main() -> None:
    if len(sys.argv) != 5 or sys.argv[1] not in ("none", "plain", "declared"):
        usage(__doc__)
    variant, port, want, polls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    raise_fd_limit()
    handler = None
    if variant == "plain":
        handler = plain
    elif variant == "declared":
        handler = cymongoose.handles(MG_EV_HTTP_MSG)(plain)
    mgr = Manager(handler)
    mgr.listen("http://127.0.0.1:%d" % port)
    ready(variant)
    deadline = time.monotonic() + 60
    # Connections are tracked whatever the handler: listener + N accepted.
    while len(mgr.connections) < want + 1:
        if time.monotonic() > deadline:
            sys.exit("only %d connections arrived" % (len(mgr.connections) - 1))
        mgr.poll(50)
    # Batches of POLLS polls until two in a row agree within 3% (at most 8),
    # as the other tests warm up: 400 polls did not let PyPy's JIT compile
    # the loop, and the figure then counted the tracing.
    last = None
    for _ in range(8):
        t0 = time.perf_counter()
        for _ in range(polls):
            mgr.poll(0)
        ns = (time.perf_counter() - t0) / polls / want * 1e9
        if last is not None and abs(ns - last) <= 0.03 * max(ns, last):
            break
        last = ns
    print("RESULT %.2f" % ns, flush=True)
    mgr.close()


if __name__ == "__main__":
    main()
