"""The exchange: one request and its response (or one WebSocket session),
shared by the thread that serves Mongoose and the producer of the response.

The producer (a worker thread, an event loop) queues operations in the
exchange's *outbox* with ``push``; the server core moves them into
Mongoose's send buffer on the poll thread (``HttpCore.flush``).  The first
push after the outbox was emptied schedules one flush through the server's
``call_soon``; later pushes ride on it.

Flow control: a producer whose outbox holds ``STREAM_THRESHOLD`` bytes is
told to wait (``push`` returns True) and is woken (``wake``) once the outbox
drained below ``LOW_WATER``.
"""

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Optional, Tuple

from ._access_log import AccessRecord
from ._http_writers import CHUNK, END, FRAME_HTTP10, FRAME_NO_BODY, RAW
from .connection import Connection

if TYPE_CHECKING:
    from ._http_server import HttpCore

__all__ = ["RAW", "CHUNK", "END", "ABORT", "CALL", "WS", "WS_CLOSE", "FLUSH", "NOW", "NO_LOCK",
           "STREAM_THRESHOLD", "LOW_WATER", "STREAM_BATCH_SIZE", "MAX_BODY_SIZE",
           "ClientDisconnected", "Exchange"]

#: A producer whose outbox holds this many bytes waits until it drains to
#: ``LOW_WATER``.
STREAM_THRESHOLD = 1024 * 1024
LOW_WATER = 256 * 1024
#: Unsent bytes the poll thread leaves in Mongoose's send buffer before it
#: waits for ``MG_EV_WRITE``.
STREAM_BATCH_SIZE = 256 * 1024
#: Default request body limit (the same as waitress's).
MAX_BODY_SIZE = 1024 * 1024 * 1024

# Outbox operations besides the writers' RAW/CHUNK/END bit mask.
ABORT = 16  # the response cannot be completed: close (data FLUSH: send the rest first)
CALL = 32   # run data(conn) on the poll thread (the WebSocket handshake)
WS = 64     # | opcode: send data as one WebSocket frame (CLOSE: then close)
WS_CLOSE = 8
FLUSH = "flush"  # ABORT's data: send what is queued, then close
NOW = "now"

#: One outbox entry: (operation, data).
Op = Tuple[int, Any]


class _NoLock:
    """The lock of an exchange that one thread alone touches (the ASGI
    server, inline WSGI): nothing to allocate or acquire per request."""

    __slots__ = ()

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: Any) -> None:
        return None


NO_LOCK: Any = _NoLock()


class ClientDisconnected(ConnectionError):
    """Sending failed: the client went away (or the server closed) first."""


class Exchange:
    """One request and its response, or one WebSocket session.

    Shared by the poll thread and the producer.  The outbox and its
    counters are guarded by ``lock``; ``conn`` is touched by the poll thread
    only.  Subclasses say how a waiting producer is woken (``wake``), what a
    body piece does (``on_body``) and what a lost client does
    (``on_disconnect``).
    """

    __slots__ = ("server", "conn", "lock", "outbox", "queued", "scheduled", "waiting",
                 "dead", "progress", "keep_alive", "close_after", "body_done", "ended", "writing",
                 "method", "http10", "frame_bits", "access", "__weakref__")

    def __init__(self, server: "HttpCore", conn: Connection, method: str, proto: str,
                 connection_header: Optional[str], lock: Any = None) -> None:
        self.server = server
        self.conn = conn
        #: ``NO_LOCK`` when one thread alone touches the exchange.
        self.lock: Any = threading.Lock() if lock is None else lock
        #: Made by the first push: a response written whole never needs one.
        self.outbox: Optional[Deque[Op]] = None
        self.queued = 0           # bytes in the outbox
        self.scheduled = False    # a flush is pending or waits for MG_EV_WRITE
        self.waiting = False      # the producer waits for the outbox to drain
        self.dead = False         # client gone or exchange aborted
        self.progress = 0         # outbox items handed to Mongoose so far
        self.method = method
        http10 = self.http10 = proto == "HTTP/1.0"
        #: The framers' flags for this request (``_http_writers``).
        self.frame_bits = ((FRAME_NO_BODY if method == "HEAD" else 0)
                           | (FRAME_HTTP10 if http10 else 0))
        token = (connection_header or "").lower()
        if http10:
            self.keep_alive = "keep-alive" in token
        else:
            self.keep_alive = "close" not in token
        self.close_after = not self.keep_alive
        self.body_done = False
        self.ended = False
        self.writing = False      # Mongoose is asked for MG_EV_WRITE on its behalf
        self.access: Optional[AccessRecord] = None  # set by subclasses when logging

    # -- producer side (any thread) -------------------------------------------

    def push(self, op: int, data: Any = b"") -> bool:
        """Queue an operation; True when the producer should wait for room.

        Raises ``ClientDisconnected`` once the client is gone.
        """
        size = len(data) if isinstance(data, bytes) else 0
        with self.lock:
            if self.dead:
                raise ClientDisconnected("client disconnected")
            if self.outbox is None:
                self.outbox = deque()
            self.outbox.append((op, data))
            self.queued += size
            ring = not self.scheduled
            self.scheduled = True
            full = self.queued >= STREAM_THRESHOLD
            if full:
                self.waiting = True
        if ring:
            try:
                self.server.call_soon(self.server.flush, self)
            except RuntimeError:
                self.mark_dead()
                raise ClientDisconnected("server closed") from None
        return full

    def abort(self, flush: bool = False) -> None:
        """Close the connection without completing the response (any thread).

        With ``flush`` what was queued is sent first, so the client sees a
        truncated response; otherwise the connection closes at once.
        """
        with self.lock:
            if self.dead:
                return
            if self.outbox is None:
                self.outbox = deque()
            self.outbox.append((ABORT, FLUSH if flush else NOW))
            ring = not self.scheduled
            self.scheduled = True
        if ring:
            try:
                self.server.call_soon(self.server.flush, self)
            except RuntimeError:
                self.mark_dead()

    def mark_dead(self) -> None:
        """The exchange can send nothing more: drop the outbox, free the producer."""
        with self.lock:
            if self.dead:
                return
            self.dead = True
            self.outbox = None
            self.queued = 0
            self.waiting = False
        self.wake()

    # -- hooks ----------------------------------------------------------------

    def wake(self) -> None:
        """Wake a producer waiting for room (any thread)."""

    def on_body(self, data: bytes, more: bool) -> None:
        """A piece of the request body; ``more`` False for the last (poll thread)."""

    def on_disconnect(self) -> None:
        """The client went away before the exchange ended (poll thread)."""

