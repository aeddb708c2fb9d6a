"""What each piece of the per-request hot path costs, in ns per call.

    PYTHONPATH=. python3 bench/micro.py          # CPython
    PYTHONPATH=. pypy3 bench/micro.py            # PyPy

Times the Python side of one HTTP request in isolation, on the running
interpreter: the dispatcher called directly (no C-to-Python crossing), the
message view, ``Connection.reply`` and the C calls under it.  The crossing
itself is what the idle benchmark's ``def h(c, ev, d): pass`` row costs on
top of the direct dispatcher call.  Uses the package's internals, so it
follows them when they change.  Each figure is the best of several repeats,
minus the cost of an empty loop.
"""

import platform
import socket
import sys
import time
from typing import Any, Callable, List, Tuple

import cymongoose
from cymongoose import MG_EV_HTTP_MSG, MG_EV_POLL, Manager
from cymongoose import _dispatch
from cymongoose._ffi import ffi, lib
from cymongoose.messages import HttpMessage

N = 100_000
REPEATS = 7


def best_ns(fn: Callable[[int], None], n: int = N) -> float:
    """Best time per iteration of ``fn(n)`` over REPEATS runs (first run warms up)."""
    fn(n)
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def accepted_connection(mgr: Manager) -> Tuple[Any, socket.socket]:
    """A real accepted connection (and its client socket) to run calls on."""
    lst = mgr.listen("http://127.0.0.1:0")
    client = socket.create_connection(("127.0.0.1", lst.local_addr[1]))
    deadline = time.monotonic() + 5
    while len(mgr.connections) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the connection was not accepted")
        mgr.poll(10)
    conn = [c for c in mgr.connections if c is not lst][0]
    return conn, client


def main() -> None:
    mgr = Manager()
    conn, client = accepted_connection(mgr)
    slot, cid, c = mgr._slot, conn._id, conn._c
    dispatch = _dispatch._cym_dispatch
    hm = ffi.new("struct mg_http_message *")
    uri = ffi.new("char[]", b"/hello")
    hm.uri.buf, hm.uri.len = uri, 6
    addr = int(ffi.cast("uintptr_t", hm))
    block = b"Content-Type: text/plain\r\n"

    def pass_handler(c_: Any, ev: int, d: Any) -> None:
        pass

    def reply_handler(c_: Any, ev: int, d: Any) -> None:
        c_.reply(200, b"ok")

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    def t_dispatch(ev: int, arg: int) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                dispatch(slot, cid, ev, arg)
        return run

    def t_view(n: int) -> None:
        bind = HttpMessage._bind
        for _ in range(n):
            bind(addr)._invalidate()

    def t_uri(n: int) -> None:
        view = HttpMessage._bind(addr)
        for _ in range(n):
            view.uri

    def in_batches(call: Callable[[], None]) -> Callable[[int], None]:
        # Replies append to the send buffer; empty it every 10 calls, so it
        # never grows (Mongoose copies the whole buffer when it does).
        def run(n: int) -> None:
            for _ in range(n // 10):
                for _ in range(10):
                    call()
                c.send.len = 0
        return run

    def t_flags(n: int) -> None:
        flags = lib.cym_flags
        for _ in range(n):
            flags(c)

    mgr._inside += 1  # as inside poll(): the dispatcher's fast path applies
    base = best_ns(empty)
    rows: List[Tuple[str, float]] = []

    def add(name: str, fn: Callable[[int], None]) -> None:
        rows.append((name, best_ns(fn) - base))

    conn._handler = None
    add("dispatch POLL, no handler (direct call)", t_dispatch(MG_EV_POLL, 0))
    conn._handler = pass_handler
    add("dispatch POLL, def h(c, ev, d): pass (direct call)", t_dispatch(MG_EV_POLL, 0))
    add("dispatch HTTP_MSG, handler pass (direct call)", t_dispatch(MG_EV_HTTP_MSG, addr))
    conn._handler = reply_handler
    add("dispatch HTTP_MSG, handler replies (direct call)",
        in_batches(lambda: dispatch(slot, cid, MG_EV_HTTP_MSG, addr)))
    add("HttpMessage._bind(addr)._invalidate()", t_view)
    add("HttpMessage.uri (decode)", t_uri)
    add("conn.reply(200, b'ok')", in_batches(lambda: conn.reply(200, b"ok")))
    add("lib.cym_reply(c, 200, block, 26, b'ok', 2)",
        in_batches(lambda: lib.cym_reply(c, 200, block, 26, b"ok", 2)))
    add("lib.cym_flags(c) (a trivial C call)", t_flags)

    mgr._inside -= 1
    impl = "%s %s" % (platform.python_implementation(), platform.python_version())
    print("| %s, cymongoose %s | ns per call |" % (impl, cymongoose.__version__))
    print("|---|---|")
    for name, ns in rows:
        print("| %s | %.0f |" % (name, ns))
    client.close()
    mgr.close()


if __name__ == "__main__":
    sys.exit(main())
