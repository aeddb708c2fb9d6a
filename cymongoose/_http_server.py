"""The poll-thread half of the WSGI and ASGI servers (``HttpCore``).

Mongoose runs on one poll thread; the application runs somewhere else (a
thread pool, an asyncio loop) and talks to this side through exchanges
(``_http_exchange``).  Here:

* **Requests.**  A request whose body is already buffered when its head
  arrives (or that has none) is taken from ``MG_EV_HTTP_MSG``.  A larger
  body is taken over from Mongoose's parser at ``MG_EV_HTTP_HDRS``
  (``cym_adapters_take_body``) and streamed in pieces through a body reader
  (``_http_body``) as it arrives, so bodies of any size up to
  ``max_body_size`` work (Mongoose alone caps them at 3 MiB).  A larger
  ``Content-Length`` gets ``413``.  ``Expect: 100-continue`` is answered.
* **Responses.**  ``flush`` moves outbox items into Mongoose's send buffer.
  Each response ends by clearing Mongoose's response-in-progress mark, so
  every request on a keep-alive connection is answered.
* **Flow control.**  At most ``STREAM_BATCH_SIZE`` unsent bytes per
  connection are handed to Mongoose; more wait for ``MG_EV_WRITE``.  A
  consumer that falls behind pauses reading from its client (``pause``).
* **Cross-thread calls.**  Other threads never touch a ``Connection``:
  they hand a job to ``call_soon`` (the Manager's
  ``call_soon_threadsafe``), which runs it on the poll thread.  The one
  exception: a WSGI worker writes a whole response itself while it holds
  the place of a poll thread that waits in epoll_wait (``_csrc/park.c``).
* **Shutdown.**  ``begin_shutdown`` closes the listening sockets and lets
  in-flight exchanges finish; their connections close when they do.  A
  request still arriving on a kept-alive connection is answered with
  ``Connection: close`` (so a worker replaced under load refuses nothing);
  connections idle ``IDLE_LINGER`` seconds later close once their send
  buffer is empty.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import constants as C
from ._dispatch import handles
from ._ffi import ffi, lib
from ._http_body import BodyError, BodyReader, ChunkedBody, LengthBody
from ._http_exchange import (ABORT, CALL, END, FLUSH, LOW_WATER, STREAM_BATCH_SIZE, WS,
                             WS_CLOSE, Exchange)
from ._http_request import server_name_of
from ._http_writers import error_response, frame_whole_into
from .forwarded import Front
from .connection import Connection
from .manager import Manager
from .messages import HttpMessage
from .tls import tls_on_accept

log = logging.getLogger("cymongoose")

#: Seconds a kept-alive connection may still bring a request after shutdown began.
IDLE_LINGER = 0.5

_READ_BIT = 1 << C.MG_EV_READ
_F_DRAINING = int(lib.CYM_F_DRAINING)
_WRITE_BIT = 1 << C.MG_EV_WRITE
# What a complete request asks for (_csrc/http_head.c, cym_http_kind).
_request_kind = lib.cym_http_kind
_REQ_WS = int(lib.CYM_REQ_WS)
_REQ_VERSION = int(lib.CYM_REQ_VERSION)
_REQ_BAD = int(lib.CYM_REQ_BAD)
_REQ_EMPTY = int(lib.CYM_REQ_EMPTY)


class _Peer:
    """Per-connection state, kept in ``Connection.userdata``.  It stands in
    for the connection where a request's scope or environ is built: its
    ``is_tls`` and ``remote_addr`` are read once per connection."""

    __slots__ = ("conn", "ex", "body", "paused", "ws_close", "is_tls", "remote_addr",
                 "environ_base", "runner")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.is_tls = conn.is_tls
        self.remote_addr = conn.remote_addr
        #: The WSGI server's ``connection_environ`` of this connection.
        self.environ_base: Optional[Dict[str, Any]] = None
        self.ex: Optional[Exchange] = None
        self.body: Optional[BodyReader] = None  # while streaming a request body
        self.paused = False
        self.ws_close: Optional[Tuple[int, str]] = None
        #: The ASGI server's task for this connection's requests.
        self.runner: Any = None


def _drain(conn: Connection) -> None:
    """``conn.drain()`` without its carry to the poll thread: for a caller
    that is that thread or holds its place (``_csrc/park.c``)."""
    c = conn._c
    if c is not None:
        lib.cym_set_flag(c, _F_DRAINING, 1)


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
    #: Trusted proxies and the mount prefix, applied to every request; None
    #: when nothing is trusted and nothing mounted.
    front: Optional[Front] = None

    def __init__(self, error_handler: Optional[Callable[[BaseException], Any]],
                 max_body_size: int) -> None:
        self._mgr = Manager(self._on_event, True, error_handler)
        # Bodiless requests skip MG_EV_HTTP_HDRS: _on_head has nothing to do.
        lib.cym_mgr_hdrs_bodies_only(self._mgr._cm, 1)
        self._max_body = max_body_size
        #: Run ``fn(*args)`` on the poll thread soon (thread-safe); raises
        #: ``RuntimeError`` once the Manager is closed.
        self.call_soon: Callable[..., None] = self._mgr.call_soon_threadsafe
        self._listeners: List[Connection] = []
        self._inflight: Dict[Exchange, None] = {}
        self._draining = False
        #: The connection whose MG_EV_HTTP_MSG is being handled, if any.
        self._answering: Optional[Connection] = None
        self._server_name = "127.0.0.1"
        self._server_port = 0

    @property
    def manager(self) -> Manager:
        """The Manager that runs the server."""
        return self._mgr

    def _listen(self, url: str, tls: Any = None, fd: Optional[int] = None) -> Connection:
        handler = None
        if tls is not None:  # TLS on each accepted connection
            handler = tls_on_accept(self._on_event, tls)
        if fd is None:
            conn = self._mgr.listen(url, handler, http=True)
        else:
            conn = self._mgr.listen_fd(fd, handler, scheme="https" if tls is not None else "http",
                                       http=True)
        self._listeners.append(conn)
        if len(self._listeners) == 1:
            self._server_name = server_name_of(url)
            addr = conn.local_addr
            self._server_port = addr[1] if addr else 0
        return conn

    def close(self) -> None:
        """Free the Manager (not while polling); later ``call_soon`` raise."""
        self._mgr.close()

    # -- events ---------------------------------------------------------------

    # Declared on the function, so the bound method carries it with no
    # wrapper call per event.
    @handles(C.MG_EV_HTTP_HDRS, C.MG_EV_HTTP_MSG, C.MG_EV_CLOSE, C.MG_EV_WS_MSG, C.MG_EV_WS_CTL)
    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == C.MG_EV_HTTP_MSG:
            self._on_message(conn, data)
        elif ev == C.MG_EV_READ:
            self._on_read(conn)
        elif ev == C.MG_EV_WRITE:
            peer = conn.userdata
            if peer is not None and peer.ex is not None:
                self.flush(peer.ex)
        elif ev == C.MG_EV_HTTP_HDRS:
            self._on_head(conn, data)
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
        """MG_EV_HTTP_HDRS: take over bodies that are not buffered yet.  Only
        requests that announce a body get here (``cym_mgr_hdrs_bodies_only``)."""
        if conn.is_websocket:
            return
        peer = self._peer(conn)
        if peer.ex is not None or peer.body is not None:
            return
        kind = _request_kind(hm._addr)  # as _on_message decides
        if kind == _REQ_VERSION or kind == _REQ_BAD:
            self._reject(conn, hm, 505 if kind == _REQ_VERSION else 400)
            return
        proto = hm.proto
        te = hm.header("Transfer-Encoding")
        if te is not None and proto != "HTTP/1.0":
            if te.strip().lower() != "chunked":
                return  # Mongoose rejects it and closes the connection
            body: BodyReader = ChunkedBody(self._max_body)
        else:
            length = int(hm.header("Content-Length") or 0)  # validated by Mongoose
            if length == 0:
                return
            if length > self._max_body:
                self._reject(conn, hm, 413)
                return
            if lib.cym_adapters_buffered(conn._c, hm._ptr()) >= length:
                return  # complete: Mongoose delivers it as MG_EV_HTTP_MSG
            body = LengthBody(length)
        # Read everything needed from the view before the head leaves the
        # buffer: the view points into it.
        ex = self.start_exchange(conn, hm)
        ex.close_after |= self._draining
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

    def _error_reply(self, conn: Connection, status: int, headers: str = "") -> None:
        c = conn._c
        if c is None or conn.is_closing:
            return
        reply = error_response(status, close=True, headers=headers)
        lib.cym_adapters_write(c, reply, len(reply), END)
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
                piece, done, n = body.feed(data)
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
            avail = conn.recv_len

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
        peer = conn.userdata
        if peer is None:
            peer = conn.userdata = _Peer(conn)
        kind = _request_kind(hm._addr)
        if kind == _REQ_VERSION or kind == _REQ_BAD:
            self._error_reply(conn, 505 if kind == _REQ_VERSION else 400)
            return
        if kind == _REQ_WS:
            if self._draining:
                self._error_reply(conn, 503)
                return
            refusal = self.refuse_websocket(hm)
            if refusal is not None:
                self._error_reply(conn, *refusal)
                return
            ex = self.start_websocket(conn, hm)
            if ex is not None:
                peer.ex = ex
                self._inflight[ex] = None
                return
        ex = self.start_exchange(conn, hm)
        # While draining a request is still answered, with Connection: close.
        ex.close_after |= self._draining
        peer.ex = ex
        self._inflight[ex] = None
        ex.body_done = True
        self._answering = conn
        try:
            ex.on_body(b"" if kind == _REQ_EMPTY else hm.body_bytes, False)
        finally:
            self._answering = None

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
        self.connection_closed(peer)

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

    def connection_closed(self, peer: _Peer) -> None:
        """MG_EV_CLOSE of a client connection, after its exchange was told."""

    def refuse_websocket(self, hm: HttpMessage) -> Optional[Tuple[int, str]]:
        """An upgrade request: (status, header lines) to answer it with
        instead of a WebSocket session, or None to go on to
        ``start_websocket``."""
        return None

    def start_websocket(self, conn: Connection, hm: HttpMessage) -> Optional[Exchange]:
        """An upgrade request: start a WebSocket session, or None to treat it
        as plain HTTP."""
        return None

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> Exchange:
        """A request head arrived (the body follows through ``on_body``):
        build its exchange.  ``hm`` is valid during the call only."""
        raise NotImplementedError

    # -- responses --------------------------------------------------------------

    def flush(self, ex: Exchange) -> None:
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
                if c.send.len >= STREAM_BATCH_SIZE:
                    blocked = True
                    break
                op, data = ex.outbox.popleft()
                if isinstance(data, bytes):
                    ex.queued -= len(data)
                ex.progress += 1
                wake = ex.waiting and ex.queued < LOW_WATER
                if wake:
                    ex.waiting = False
            if wake:
                ex.wake()
            if not self._apply(ex, conn, op, data):
                return
        self.watch_write(ex, blocked)

    def watch_write(self, ex: Exchange, on: bool) -> None:
        """Ask Mongoose for MG_EV_WRITE on ``ex``'s connection, or stop."""
        if ex.writing != on:
            ex.writing = on
            _set_events(ex.conn, _WRITE_BIT, on)

    def _apply(self, ex: Exchange, conn: Connection, op: int, data: Any) -> bool:
        """Carry out one outbox item; False when the exchange is over."""
        if op == ABORT:
            self._end_exchange(ex, conn)
            if data is FLUSH:
                conn.drain()
            else:
                conn.close()
            return False
        if op == CALL:
            data(conn)
            return not ex.ended
        peer = conn.userdata
        if peer is not None and peer.paused and data:
            # A response on its way: stop holding the client back, or both
            # sides could end up waiting for each other.
            self.pause(conn, False)
        if op & WS:
            conn.ws_send(data, op & 15)
            if op & 15 == WS_CLOSE:  # the session ends
                conn.drain()
            return True
        lib.cym_adapters_write(conn._c, data, len(data), op)
        if ex.access is not None:
            ex.access.wrote(data)
        if op & END:
            self._finish(ex, conn)
            return False
        return True

    def _finish(self, ex: Exchange, conn: Connection, waiting: Optional[int] = None) -> None:
        """The response is complete: keep the connection alive or close it.
        ``waiting``: whether bytes of a next request wait in the receive
        buffer, when the caller knows."""
        self._end_exchange(ex, conn)
        if ex.close_after or self._draining or not ex.body_done:
            _drain(conn)
        elif (conn.recv_len if waiting is None else waiting) and conn is not self._answering:
            # Pipelined requests wait in the buffer; Mongoose parses them on
            # its next poll, which this makes immediate.  (A response that
            # ends inside MG_EV_HTTP_MSG needs no wakeup: Mongoose's parser
            # goes on with the buffer once the handler returns.)
            self._mgr.wakeup(self._mgr.wakeup_id, b"")

    def _end_exchange(self, ex: Exchange, conn: Connection) -> None:
        ex.ended = True
        record = ex.access
        if record is not None:
            ex.access = None
            record.done()
        peer = conn.userdata
        if peer is not None:
            # _forget, inline: this runs once per response.
            if peer.ex is ex:
                peer.ex = None
            self._inflight.pop(ex, None)
        if ex.writing:
            ex.writing = False
            _set_events(conn, _WRITE_BIT, False)
        if ex.scheduled or ex.outbox:
            with ex.lock:
                ex.outbox = None
                ex.queued = 0
                ex.scheduled = False

    def write_whole(self, ex: Exchange, conn: Connection, data: Any, size: int) -> None:
        """The whole rest of ``ex``'s response (``size`` bytes at ``data``,
        bytes or a C buffer), when nothing of it was queued: into
        Mongoose's send buffer and done (poll thread, between polls on the
        thread that polls, or a worker holding its place; none of the C
        calls here fires an event)."""
        peer = conn.userdata
        if peer is not None and peer.paused:
            self.pause(conn, False)  # as in _apply
        lib.cym_adapters_write(conn._c, data, size, END)
        if ex.access is not None:
            ex.access.wrote(data if isinstance(data, bytes) else ffi.unpack(data, size))
        self._finish(ex, conn)

    # -- shutdown ---------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Refuse new clients (poll thread or between polls); in-flight
        exchanges finish.  A request still arriving on a kept-alive
        connection is answered with ``Connection: close``; connections idle
        ``IDLE_LINGER`` seconds later close once what they were sent has
        left, so a client whose next request was already under way sees no
        reset and a slow reader gets its whole response.  Idempotent."""
        if self._draining:
            return
        self._draining = True
        for lsn in self._listeners:
            if lsn._c is not None:
                lib.cym_adapters_unlisten(lsn._c)
        for conn in self._mgr.connections:
            peer = conn.userdata
            if isinstance(peer, _Peer) and peer.ex is not None:
                self.shutdown_exchange(peer.ex)
        self._mgr.timer_add(int(IDLE_LINGER * 1000), self._close_idle)

    def _close_idle(self) -> None:
        for conn in self._mgr.connections:
            if conn in self._listeners:
                continue
            peer = conn.userdata
            if not isinstance(peer, _Peer) or peer.ex is None:
                # Drain, not close: the last response of a finished
                # exchange may still sit in the send buffer.
                conn.drain()

    def send_whole(self, ex: Exchange, framed: Any) -> bool:
        """Hand the rest of ``ex``'s response to Mongoose at once, if this
        server can (producers on the poll thread); False: push it instead."""
        return False

    def respond_whole(self, ex: Exchange, code: int, line: bytes, flat: bytes, npairs: int,
                      body: bytes) -> bool:
        """``ex``'s whole response (nothing of it sent yet; arguments as for
        ``frame_response``) framed straight into Mongoose's send buffer, and
        done, where this server's producer may write there now and nothing
        needs the bytes (no access log); False: frame it the general way."""
        return False

    def frame_whole(self, ex: Exchange, conn: Connection, code: int, line: bytes, flat: bytes,
                    npairs: int, body: bytes, total: int) -> bool:
        """``respond_whole`` once its server said ``conn`` may be written
        now (none of the C calls here fires an event); ``total`` as in
        ``frame_whole_into``.  False when an access record wants the
        response's bytes (the general path gives them), or when ``body`` is
        not the whole body."""
        if ex.access is not None:
            return False
        peer = conn.userdata
        if peer is not None and peer.paused:
            self.pause(conn, False)  # as in write_whole
        waiting = frame_whole_into(ex, conn._c, code, line, flat, npairs, body, total)
        if waiting < 0:
            return False
        self._finish(ex, conn, waiting)
        return True

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
