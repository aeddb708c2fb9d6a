"""The HTTP/1.1 server core under the WSGI and ASGI adapters.

Both adapters run Mongoose on one poll thread and the application somewhere
else (a thread pool, an asyncio loop).  This module is the poll-thread half
they share:

* **Requests.**  A request whose body is already buffered when its headers
  arrive (or that has none) is taken from ``MG_EV_HTTP_MSG``.  A larger body
  is taken over from Mongoose's parser at ``MG_EV_HTTP_HDRS``
  (``cym_adapters_take_body``) and streamed in pieces as it arrives, decoding
  ``Transfer-Encoding: chunked`` here, so bodies of any size up to
  ``max_body_size`` work (Mongoose alone caps them at 3 MiB).  A larger
  ``Content-Length`` gets ``413``.  ``Expect: 100-continue`` is answered.
* **Responses.**  The producer (worker thread, event loop) queues pieces in
  the exchange's *outbox*; the poll thread moves them into Mongoose's send
  buffer.  Each response ends by clearing Mongoose's response-in-progress
  mark, so every request on a keep-alive connection is answered (the 0.2.5
  adapters served only the first one, spec 11 item 13).
* **Flow control.**  The poll thread hands Mongoose at most
  ``_STREAM_BATCH_SIZE`` unsent bytes per connection and waits for
  ``MG_EV_WRITE`` before adding more; a producer whose outbox holds
  ``_STREAM_THRESHOLD`` bytes waits until it drains.  Memory per response is
  bounded whatever the client's speed.
* **Cross-thread calls.**  Other threads never touch a ``Connection``: they
  queue a job and ring one doorbell, a ``Manager.wakeup`` to the listener.
  At most one doorbell is outstanding per server, so none can be lost to a
  full wakeup socket.
* **Shutdown.**  ``begin_shutdown`` closes the listening sockets, closes
  idle connections and lets in-flight exchanges finish; their connections
  close when they do.
"""

import email.utils
import http
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from . import constants as C
from ._dispatch import handles
from ._ffi import ffi, lib
from .connection import Connection
from .manager import Manager
from .messages import HttpMessage

#: A producer whose outbox holds this many bytes waits until it drains to
#: ``_LOW_WATER`` (0.2.5 used the name for its buffering threshold).
_STREAM_THRESHOLD = 1024 * 1024
_LOW_WATER = 256 * 1024
#: Unsent bytes the poll thread leaves in Mongoose's send buffer before it
#: waits for ``MG_EV_WRITE``.
_STREAM_BATCH_SIZE = 256 * 1024
#: Default ``stream_timeout``: seconds a WSGI response may make no progress.
_STREAM_PUT_TIMEOUT = 5.0
#: Default request body limit (the same as waitress's).
_MAX_BODY_SIZE = 1024 * 1024 * 1024

_READ_BIT = 1 << C.MG_EV_READ
_WRITE_BIT = 1 << C.MG_EV_WRITE

# Outbox operations: a bit mask for cym_adapters_write, or one of these.
_RAW = 0
_CHUNK = int(lib.CYM_AD_CHUNK)
_END = int(lib.CYM_AD_END)
_ABORT = 16  # the response cannot be completed: close (data _FLUSH: send the rest first)
_CALL = 32   # run data(conn) on the poll thread (the WebSocket handshake)
_WS = 64     # | opcode: send data as one WebSocket frame (CLOSE: then close)
_WS_CLOSE = 8
_FLUSH = "flush"  # _ABORT's data: send what is queued, then close
_NOW = "now"

_REASON: Dict[int, str] = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
# Every other registered code gets its standard phrase (0.2.5: empty).
for _s in http.HTTPStatus:
    _REASON.setdefault(int(_s), _s.phrase)

log = logging.getLogger("cymongoose")


def _status_line(code: int) -> str:
    """``"HTTP/1.1 <code> <reason>"``; the reason is empty for unregistered codes."""
    return "HTTP/1.1 %d %s" % (code, _REASON.get(code, ""))


def _format_chunked_header(code: int, headers: Iterable[Tuple[str, str]]) -> bytes:
    """The head of a chunked response: status line, the headers in order,
    and ``Transfer-Encoding: chunked`` unless the headers already have it.

    0.2.5's private helper, kept for code written against it; the servers
    frame responses with ``frame_response``.
    """
    lines = [_status_line(code)]
    chunked = False
    for name, value in headers:
        if name.lower() == "transfer-encoding":
            chunked = True
        lines.append("%s: %s" % (name, value))
    if not chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_date_cache: List[Any] = [0, ""]


def http_date() -> str:
    """The ``Date`` header value for now, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    date: str = _date_cache[1]
    return date


def server_name_of(url: str) -> str:
    """The host of a listen URL; the wildcard addresses read ``127.0.0.1``."""
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return host


def wsgi_str(s: str) -> str:
    """A decoded header/URI text back to PEP 3333's bytes-as-latin-1 string."""
    if s.isascii():
        return s
    return s.encode("utf-8", "surrogateescape").decode("latin-1")


def request_target(hm: Any) -> Tuple[str, str]:
    """(path, query) of a request: Mongoose may leave ``?query`` in ``uri``."""
    uri = hm.uri
    query = hm.query
    if "?" in uri:
        uri, _, rest = uri.partition("?")
        query = query or rest
    return uri, query


def peer_of(conn: Any) -> Tuple[str, int]:
    """The client's (ip, port); ``("127.0.0.1", 0)`` when it is not known."""
    remote = conn.remote_addr
    return (remote[0], remote[1]) if remote else ("127.0.0.1", 0)


class ClientDisconnected(ConnectionError):
    """Sending failed: the client went away (or the server closed) first."""


_HOP_BY_HOP = frozenset(("transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"))


def frame_response(ex: "Exchange", code: int, status_line: str,
                   headers: Iterable[Tuple[str, str]],
                   total: Optional[int]) -> Tuple[bytes, int, Optional[int]]:
    """The head of a response and how its body is framed.

    ``total`` is the body length when the producer already knows it.
    Returns the head bytes, the outbox operation for body pieces (-1: the
    response has no body) and the length the body must have, if any.
    Framing: the application's ``Content-Length``, else ``total``, else
    chunked (HTTP/1.1 clients) or the end of the connection (HTTP/1.0).
    Hop-by-hop headers of the application are dropped (the server frames
    the body), ``Date`` is added, and ``Connection`` says what happens next.
    """
    no_body = ex.method == "HEAD" or code < 200 or code in (204, 304)
    lines = [status_line]
    length = None
    has_date = app_connection = False
    for name, value in headers:
        low = name.lower()
        if low in _HOP_BY_HOP:
            continue
        if low == "content-length":
            try:
                length = int(value)
            except ValueError:
                raise ValueError("invalid Content-Length %r" % (value,)) from None
        elif low == "connection":
            app_connection = True
            if "close" in value.lower():
                ex.close_after = True
        elif low == "date":
            has_date = True
        lines.append("%s: %s" % (name, value))
    if not has_date:
        lines.append("Date: " + http_date())
    op = _RAW
    if no_body:
        op = -1
    elif length is None:
        if total is not None:
            length = total
            lines.append("Content-Length: %d" % total)
        elif not ex.http10:
            op = _CHUNK
            lines.append("Transfer-Encoding: chunked")
        else:
            ex.close_after = True  # the body ends when the connection does
    if not app_connection:
        if ex.close_after:
            lines.append("Connection: close")
        elif ex.http10:
            lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), op, length


class BodyError(Exception):
    """A request body that cannot be accepted; ``status`` says why."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _LengthBody:
    """A body delimited by Content-Length."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def take(self, available: int) -> int:
        """How many of the ``available`` received bytes belong to the body."""
        return min(available, self.remaining)

    def feed(self, data: bytes) -> Tuple[bytes, bool]:
        self.remaining -= len(data)
        return data, self.remaining == 0


_HEX = b"0123456789abcdefABCDEF"


class _ChunkedBody:
    """A ``Transfer-Encoding: chunked`` body, decoded incrementally."""

    __slots__ = ("state", "left", "line", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.state = 0      # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.left = 0
        self.line = b""
        self.limit = limit
        self.total = 0

    def take(self, available: int) -> int:
        return available

    def feed(self, data: bytes) -> Tuple[bytes, bool, int]:
        """Decode ``data``: (body bytes, finished, bytes of ``data`` used).

        Raises ``BodyError(400)`` for a malformed stream and
        ``BodyError(413)`` past the limit.
        """
        out = []
        i, n = 0, len(data)
        while i < n:
            if self.state == 1:
                k = min(self.left, n - i)
                out.append(data[i:i + k])
                i += k
                self.left -= k
                if self.left == 0:
                    self.state = 2
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.line += data[i:]
                if len(self.line) > 8192:
                    raise BodyError(400)
                i = n
                break
            line = self.line + data[i:j]
            self.line = b""
            i = j + 1
            if not line.endswith(b"\r"):
                raise BodyError(400)  # bare LF: refused, as Mongoose does
            line = line[:-1]
            if self.state == 2:
                if line:
                    raise BodyError(400)
                self.state = 0
            elif self.state == 0:
                size = line.split(b";", 1)[0].strip(b" \t")
                # Hex digits only: int() would also take "0x", "_" and signs.
                if not size or size.strip(_HEX):
                    raise BodyError(400)
                self.left = int(size, 16)
                self.total += self.left
                if self.total > self.limit:
                    raise BodyError(413)
                self.state = 1 if self.left else 3
            elif not line:  # the blank line after the (ignored) trailers
                return b"".join(out), True, i
        return b"".join(out), False, i


class Exchange:
    """One request and its response, or one WebSocket session.

    Shared by the poll thread and the producer.  The outbox and its
    counters are guarded by ``lock``; ``conn`` is touched by the poll thread
    only.  Subclasses say how a waiting producer is woken (``wake``), what a
    body piece does (``on_body``) and what a lost client does
    (``on_disconnect``).
    """

    __slots__ = ("server", "conn", "lock", "outbox", "queued", "scheduled", "waiting",
                 "dead", "progress", "keep_alive", "close_after", "body_done", "ended",
                 "method", "http10", "__weakref__")

    def __init__(self, server: "HttpCore", conn: Connection, method: str, proto: str,
                 connection_header: Optional[str]) -> None:
        self.server = server
        self.conn = conn
        self.lock = threading.Lock()
        self.outbox: Deque[Tuple[int, Any]] = deque()
        self.queued = 0           # bytes in the outbox
        self.scheduled = False    # a flush is pending or waits for MG_EV_WRITE
        self.waiting = False      # the producer waits for the outbox to drain
        self.dead = False         # client gone or exchange aborted
        self.progress = 0         # outbox items handed to Mongoose so far
        self.method = method
        self.http10 = proto == "HTTP/1.0"
        token = (connection_header or "").lower()
        if self.http10:
            self.keep_alive = "keep-alive" in token
        else:
            self.keep_alive = "close" not in token
        self.close_after = not self.keep_alive
        self.body_done = False
        self.ended = False

    # -- producer side (any thread) -------------------------------------------

    def push(self, op: int, data: Any = b"") -> bool:
        """Queue an operation; True when the producer should wait for room.

        Raises ``ClientDisconnected`` once the client is gone.
        """
        size = len(data) if isinstance(data, bytes) else 0
        with self.lock:
            if self.dead:
                raise ClientDisconnected("client disconnected")
            self.outbox.append((op, data))
            self.queued += size
            ring = not self.scheduled
            self.scheduled = True
            full = self.queued >= _STREAM_THRESHOLD
            if full:
                self.waiting = True
        if ring:
            try:
                self.server.call_soon(self.server._flush, self)
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
            self.outbox.append((_ABORT, _FLUSH if flush else _NOW))
            ring = not self.scheduled
            self.scheduled = True
        if ring:
            try:
                self.server.call_soon(self.server._flush, self)
            except RuntimeError:
                self.mark_dead()

    def mark_dead(self) -> None:
        """The exchange can send nothing more: drop the outbox, free the producer."""
        with self.lock:
            if self.dead:
                return
            self.dead = True
            self.outbox.clear()
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


class _Peer:
    """Per-connection state, kept in ``Connection.userdata``."""

    __slots__ = ("conn", "ex", "body", "paused", "ws_close")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ex: Optional[Exchange] = None
        self.body: Any = None      # _LengthBody/_ChunkedBody while streaming a body
        self.paused = False
        self.ws_close: Optional[Tuple[int, str]] = None


def _set_events(conn: Connection, bit: int, on: bool) -> None:
    c = conn._c
    if c is None:
        return
    state = lib.cym_state(c)
    new = (state | bit) if on else (state & ~bit)
    if new != state:
        lib.cym_set_state(c, new)


class HttpCore:
    """The poll-thread half of a WSGI/ASGI server (see the module docstring).

    Subclasses implement ``start_exchange`` (build the exchange of a
    request; its ``on_body`` receives the body) and may implement
    ``start_websocket``, ``on_ws_message`` and ``shutdown_exchange``.
    """

    log = log
    _EVENTS = (C.MG_EV_HTTP_HDRS, C.MG_EV_HTTP_MSG, C.MG_EV_WAKEUP, C.MG_EV_CLOSE,
               C.MG_EV_WS_MSG, C.MG_EV_WS_CTL)

    def __init__(self, error_handler: Optional[Callable[[BaseException], Any]],
                 max_body_size: int) -> None:
        self._mgr = Manager(handles(*self._EVENTS)(self._on_event), True, error_handler)
        self._max_body = max_body_size
        self._jobs: List[Tuple[Callable[..., Any], Tuple[Any, ...]]] = []
        self._jobs_lock = threading.Lock()
        self._bell_rung = False
        self._closed = False
        self._bell = 0
        self._listeners: List[Connection] = []
        self._inflight: Dict[Exchange, None] = {}
        self._draining = False
        self._server_name = "127.0.0.1"
        self._server_port = 0

    @property
    def manager(self) -> Manager:
        """The Manager that runs the server."""
        return self._mgr

    def _listen(self, url: str) -> Connection:
        conn = self._mgr.listen(url, http=True)
        self._listeners.append(conn)
        if not self._bell:
            self._bell = conn.id
            self._server_name = server_name_of(url)
            addr = conn.local_addr
            self._server_port = addr[1] if addr else 0
        return conn

    # -- jobs from other threads ---------------------------------------------

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the poll thread soon (thread-safe).

        Raises ``RuntimeError`` when the Manager is closed.
        """
        with self._jobs_lock:
            if self._closed:
                raise RuntimeError("server closed")
            self._jobs.append((fn, args))
            if self._bell_rung:
                return
            self._bell_rung = True
            # Under the lock: close() cannot free the Manager meanwhile.
            if not self._mgr.wakeup(self._bell, b""):
                self._bell_rung = False
                raise RuntimeError("server is not listening")

    def close(self) -> None:
        """Free the Manager (not while polling); later ``call_soon`` raise."""
        with self._jobs_lock:
            self._closed = True
            self._jobs.clear()
        self._mgr.close()

    def _run_jobs(self) -> None:
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
            self._bell_rung = False
        for fn, args in jobs:
            try:
                fn(*args)
            except Exception:
                self.log.exception("error in a server job")

    # -- events ---------------------------------------------------------------

    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == C.MG_EV_HTTP_MSG:
            self._on_message(conn, data)
        elif ev == C.MG_EV_READ:
            self._on_read(conn)
        elif ev == C.MG_EV_WRITE:
            peer = conn.userdata
            if peer is not None and peer.ex is not None:
                self._flush(peer.ex)
        elif ev == C.MG_EV_HTTP_HDRS:
            self._on_head(conn, data)
        elif ev == C.MG_EV_WAKEUP:
            self._run_jobs()
        elif ev == C.MG_EV_CLOSE:
            self._on_close(conn)
        elif ev == C.MG_EV_WS_MSG:
            self.on_ws_message(conn, data)
        elif ev == C.MG_EV_WS_CTL:
            self._on_ws_control(conn)

    def _peer(self, conn: Connection) -> _Peer:
        peer: Optional[_Peer] = conn.userdata
        if peer is None:
            peer = conn.userdata = _Peer(conn)
        return peer

    def _on_head(self, conn: Connection, hm: HttpMessage) -> None:
        """MG_EV_HTTP_HDRS: take over bodies that are not buffered yet."""
        if conn.is_websocket:
            return
        peer = self._peer(conn)
        if peer.ex is not None or peer.body is not None:
            return
        proto = hm.proto
        te = hm.header("Transfer-Encoding")
        if te is not None and proto != "HTTP/1.0":
            if te.strip().lower() != "chunked":
                return  # Mongoose rejects it and closes the connection
            body: Any = _ChunkedBody(self._max_body)
        else:
            length = int(hm.header("Content-Length") or 0)  # validated by Mongoose
            if length == 0:
                return
            if length > self._max_body:
                self._reject(conn, hm, 413)
                return
            if lib.cym_adapters_buffered(conn._c, hm._ptr()) >= length and not self._draining:
                return  # complete: Mongoose delivers it as MG_EV_HTTP_MSG
            body = _LengthBody(length)
        if self._draining:
            self._reject(conn, hm, 503)
            return
        # Read everything needed from the view before the head leaves the
        # buffer: the view points into it.
        ex = self.start_exchange(conn, hm)
        expect = hm.header("Expect")
        continue_ = (expect is not None and expect.lower() == "100-continue"
                     and proto != "HTTP/1.0")
        lib.cym_adapters_take_body(conn._c, hm._ptr())
        peer.ex = ex
        peer.body = body
        self._inflight[ex] = None
        _set_events(conn, _READ_BIT, True)
        if continue_:
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if conn.recv_len:
            # When this head came from a poll (a pipelined request) rather
            # than a read, no MG_EV_READ follows for the bytes already here.
            self.call_soon(self._on_read, conn)

    def _reject(self, conn: Connection, hm: HttpMessage, status: int) -> None:
        """Answer ``status`` to a request whose body is not read, then close."""
        lib.cym_adapters_take_body(conn._c, hm._ptr())
        self._error_reply(conn, status)

    def _error_reply(self, conn: Connection, status: int) -> None:
        if conn.is_closing:
            return
        conn.reply(status, _REASON.get(status, "Error"), {"Connection": "close"})
        conn.drain()

    def _on_read(self, conn: Connection) -> None:
        """Body bytes of a taken-over request arrived."""
        peer = conn.userdata
        if peer is None or peer.body is None or conn.is_closing:
            return
        body = peer.body
        ex = peer.ex
        avail = conn.recv_len
        while avail:
            n = body.take(avail)
            data = conn.recv_data(n)
            try:
                if isinstance(body, _ChunkedBody):
                    piece, done, n = body.feed(data)
                else:
                    piece, done = body.feed(data)
            except BodyError as exc:
                self._body_failed(conn, peer, exc.status)
                return
            lib.cym_adapters_consume(conn._c, n)
            if done:
                peer.body = None
                _set_events(conn, _READ_BIT, False)
                ex.body_done = True
                if ex.ended:
                    conn.drain()  # answered before the body was read: nothing to resume
                else:
                    lib.cym_adapters_body_done(conn._c)
                ex.on_body(piece, False)
                return
            if piece:
                ex.on_body(piece, True)
            avail = conn.recv_len if isinstance(body, _LengthBody) else 0

    def _body_failed(self, conn: Connection, peer: _Peer, status: int) -> None:
        peer.body = None
        _set_events(conn, _READ_BIT, False)
        ex = peer.ex
        responded = ex is not None and (ex.progress or ex.ended)
        if ex is not None:
            self._forget(peer, ex)
            ex.mark_dead()
            ex.on_disconnect()
        if responded:
            conn.close()
        else:
            self._error_reply(conn, status)

    def pause(self, conn: Connection, on: bool) -> None:
        """Stop or resume reading from ``conn`` (poll thread)."""
        peer = conn.userdata
        if peer is None or peer.paused == on or conn._c is None:
            return
        peer.paused = on
        lib.cym_adapters_pause(conn._c, 1 if on else 0)

    def _on_message(self, conn: Connection, hm: HttpMessage) -> None:
        """MG_EV_HTTP_MSG: a complete request."""
        peer = self._peer(conn)
        if self._draining:
            self._error_reply(conn, 503)
            return
        upgrade = hm.header("Upgrade")
        if upgrade is not None and upgrade.lower() == "websocket":
            ex = self.start_websocket(conn, hm)
            if ex is not None:
                peer.ex = ex
                self._inflight[ex] = None
                return
        ex = self.start_exchange(conn, hm)
        peer.ex = ex
        self._inflight[ex] = None
        ex.body_done = True
        ex.on_body(hm.body_bytes, False)

    def _on_close(self, conn: Connection) -> None:
        peer = conn.userdata
        if not isinstance(peer, _Peer):
            return
        ex = peer.ex
        peer.body = None
        if ex is not None:
            self._forget(peer, ex)
            ex.mark_dead()
            ex.on_disconnect()

    def _forget(self, peer: _Peer, ex: Exchange) -> None:
        if peer.ex is ex:
            peer.ex = None
        self._inflight.pop(ex, None)

    # -- WebSocket hooks --------------------------------------------------------

    def _on_ws_control(self, conn: Connection) -> None:
        """MG_EV_WS_CTL: remember a CLOSE frame's code and reason."""
        c = conn._c
        peer = conn.userdata
        if c is None or peer is None:
            return
        reason = ffi.new("struct mg_str *")
        code = lib.cym_adapters_ws_close(c, reason)
        if code >= 0:
            text = ffi.unpack(reason.buf, reason.len).decode("utf-8", "replace") if reason.len else ""
            peer.ws_close = (code, text)

    def on_ws_message(self, conn: Connection, msg: Any) -> None:
        """MG_EV_WS_MSG (ASGI only)."""

    def start_websocket(self, conn: Connection, hm: HttpMessage) -> Optional[Exchange]:
        """An upgrade request: start a WebSocket session, or None to treat it
        as plain HTTP."""
        return None

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> Exchange:
        """A request head arrived (the body follows through ``on_body``):
        build its exchange.  ``hm`` is valid during the call only."""
        raise NotImplementedError

    # -- responses --------------------------------------------------------------

    def _flush(self, ex: Exchange) -> None:
        """Move outbox items into Mongoose's send buffer (poll thread)."""
        conn = ex.conn
        c = conn._c
        if c is None or conn.is_closing:
            with ex.lock:
                ex.scheduled = False
            return
        blocked = False
        while True:
            with ex.lock:
                if not ex.outbox:
                    ex.scheduled = False
                    break
                if c.send.len >= _STREAM_BATCH_SIZE:
                    blocked = True
                    break
                op, data = ex.outbox.popleft()
                if isinstance(data, bytes):
                    ex.queued -= len(data)
                ex.progress += 1
                wake = ex.waiting and ex.queued < _LOW_WATER
                if wake:
                    ex.waiting = False
            if wake:
                ex.wake()
            if not self._apply(ex, conn, op, data):
                return
        _set_events(conn, _WRITE_BIT, blocked)

    def _apply(self, ex: Exchange, conn: Connection, op: int, data: Any) -> bool:
        """Carry out one outbox item; False when the exchange is over."""
        if op == _ABORT:
            self._end_exchange(ex, conn)
            if data is _FLUSH:
                conn.drain()
            else:
                conn.close()
            return False
        if op == _CALL:
            data(conn)
            return not ex.ended
        peer = conn.userdata
        if peer is not None and peer.paused and data:
            # A response on its way: stop holding the client back, or both
            # sides could end up waiting for each other.
            self.pause(conn, False)
        if op & _WS:
            conn.ws_send(data, op & 15)
            if op & 15 == _WS_CLOSE:  # the session ends
                conn.drain()
            return True
        lib.cym_adapters_write(conn._c, data, len(data), op)
        if op & _END:
            self._finish(ex, conn)
            return False
        return True

    def _finish(self, ex: Exchange, conn: Connection) -> None:
        """The response is complete: keep the connection alive or close it."""
        self._end_exchange(ex, conn)
        if ex.close_after or self._draining or not ex.body_done:
            conn.drain()
        elif conn.recv_len:
            # Pipelined requests wait in the buffer; Mongoose parses them on
            # its next poll, which this makes immediate.
            self._mgr.wakeup(self._mgr.wakeup_id, b"")

    def _end_exchange(self, ex: Exchange, conn: Connection) -> None:
        ex.ended = True
        _set_events(conn, _WRITE_BIT, False)
        peer = conn.userdata
        if peer is not None:
            self._forget(peer, ex)
        with ex.lock:
            ex.outbox.clear()
            ex.queued = 0
            ex.scheduled = False

    # -- shutdown ---------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Refuse new clients and close idle connections (poll thread or
        between polls); in-flight exchanges finish."""
        self._draining = True
        for lsn in self._listeners:
            if lsn._c is not None:
                lib.cym_adapters_unlisten(lsn._c)
        for conn in self._mgr.connections:
            if conn in self._listeners:
                continue
            peer = conn.userdata
            if not isinstance(peer, _Peer) or peer.ex is None:
                conn.close()
            else:
                self.shutdown_exchange(peer.ex)

    def shutdown_exchange(self, ex: Exchange) -> None:
        """An exchange in flight at shutdown (WebSocket sessions are told to close)."""

    @property
    def in_flight(self) -> int:
        """Exchanges started and not yet finished."""
        return len(self._inflight)

    @property
    def busy(self) -> bool:
        """Connections other than the listeners are still open."""
        return self._mgr.live_handles > len(self._listeners)
