"""ASGI exchanges: the receive side (``AsgiExchange``), the
``http.response.*`` messages of one response (``AsgiResponse``) and one
HTTP request (``HttpCycle``).

Mongoose is polled on the event loop's own thread (``_loop_poller``), so
handlers hand messages to the application directly (``deliver``); the
application sends through the exchange's outbox (``_http_exchange``),
which the next poll moves into Mongoose.  When the application reads more
slowly than the client sends, the server stops reading from the client
until the application catches up.
"""

import asyncio
from collections import deque
from typing import Any, Awaitable, Deque, Dict, Generator, Optional, Tuple

from ._access_log import access_record
from ._asgi_scope import http_scope
from ._http_exchange import (END, LOW_WATER, NO_LOCK, RAW, STREAM_THRESHOLD, ClientDisconnected,
                             Exchange)
from ._http_server import HttpCore
from ._http_writers import flat_headers, frame_response, status_line
from .connection import Connection
from .messages import HttpMessage


class AsgiExchange(Exchange):
    """What the application of one request or WebSocket sees: its scope and
    the receive side.  Everything runs on the event loop's thread: the
    ``deliver`` side from Mongoose's handlers during a poll, the rest from
    the application's tasks."""

    __slots__ = ("scope", "loop", "inbox", "event", "unread", "fut", "disconnected",
                 "task")

    def __init__(self, server: HttpCore, conn: Connection, scope: Dict[str, Any],
                 connection: Optional[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(server, conn, scope.get("method", "GET"),
                         "HTTP/" + scope["http_version"],
                         connection.decode("latin-1") if connection is not None else None,
                         NO_LOCK)
        self.scope = scope
        self.loop = loop
        # (message, bytes) pairs; made by the first ``deliver``.
        self.inbox: Optional[Deque[Tuple[Dict[str, Any], int]]] = None
        # Made when first awaited: before Python 3.10 an Event binds to the
        # loop current at its creation.
        self.event: Optional[asyncio.Event] = None
        self.unread = 0          # bytes delivered to the loop, not yet received
        self.fut: Optional["asyncio.Future[None]"] = None
        self.disconnected = False
        self.task: Optional["asyncio.Task[None]"] = None

    # -- Mongoose's side (handlers, during a poll) --------------------------------

    def deliver(self, message: Dict[str, Any], size: int) -> None:
        """Queue a message for ``receive()``; stop reading when too much waits."""
        if size:
            self.unread += size
            if self.unread >= STREAM_THRESHOLD:
                self.server.pause(self.conn, True)
        inbox = self.inbox
        if inbox is None:
            inbox = self.inbox = deque()
        inbox.append((message, size))
        if self.event is not None:
            self.event.set()

    def on_disconnect(self) -> None:
        self._lost()

    def wake(self) -> None:
        self._wake()

    # -- the application's side ----------------------------------------------------

    def _lost(self) -> None:
        self.disconnected = True
        if self.event is not None:
            self.event.set()
        self._wake()

    def _wake(self) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _received(self, size: int) -> None:
        before = self.unread
        self.unread -= size
        if before >= LOW_WATER > self.unread:
            try:
                self.server.call_soon(self._resume_if_drained)
            except RuntimeError:
                pass  # the server is closed: nothing to resume

    def _resume_if_drained(self) -> None:
        """The application caught up: read from the client again (in a poll)."""
        peer = self.conn.userdata
        if self.unread < LOW_WATER and peer is not None and peer.ex is self:
            self.server.pause(self.conn, False)

    async def _next(self) -> Optional[Dict[str, Any]]:
        """The next queued message, or None once nothing more can come."""
        while not self.inbox:
            if self.finished():
                return None
            if self.event is None:
                self.event = asyncio.Event()
            self.event.clear()
            await self.event.wait()
        message, size = self.inbox.popleft()
        if size:
            self._received(size)
        return message

    def finished(self) -> bool:
        """Nothing more will be queued for ``receive()``."""
        return self.disconnected

    async def _room(self) -> None:
        """Wait until the outbox drained (flow control)."""
        while True:
            with self.lock:
                if self.dead or self.queued < LOW_WATER:
                    return
                self.waiting = True
                fut = self.fut = self.loop.create_future()
            await fut

    async def _push(self, op: int, data: Any = b"") -> None:
        if self.push(op, data):
            await self._room()


class AsgiResponse:
    """The ``http.response.*`` messages of one response (event loop)."""

    __slots__ = ("start_msg", "head_sent", "op", "length", "sent", "complete")

    def __init__(self) -> None:
        self.start_msg: Optional[Any] = None
        self.head_sent = False
        self.op = RAW
        self.length: Optional[int] = None
        self.sent = 0
        self.complete = False

    def start(self, message: Any) -> None:
        """``http.response.start``: kept until the first body message.
        A status outside 200-599 raises ``ValueError`` and headers that are
        not bytes ``TypeError``, now; a name that is not a token or a
        control character (CR, LF, NUL) in a value raise ``ValueError``
        when the head is framed, before anything is sent."""
        if self.complete:
            raise RuntimeError("the response is already complete")
        if self.start_msg is not None:
            raise RuntimeError("the response has already started")
        status = int(message["status"])
        if not 200 <= status <= 599:
            # A 1xx would leave the client waiting for the real answer (RFC
            # 9110 section 15); outside 100-599 a status is invalid.
            raise ValueError("invalid HTTP response status %d (want 200-599)" % status)
        self.start_msg = (status, flat_headers(message.get("headers")))

    def body(self, ex: AsgiExchange, message: Any) -> Optional[Awaitable[None]]:
        """``http.response.body`` of ``ex``'s response: None when it is done
        (a whole response, written at once), else what the caller awaits
        (the pieces going through the outbox, with flow control).  Misuse
        raises at once.  (The exchange is passed in, not kept: an exchange
        and its response referring to each other would make a reference
        cycle per request, left for the garbage collector.)"""
        if self.complete:
            raise RuntimeError("the response is already complete")
        if self.start_msg is None:
            raise RuntimeError("response body sent before the response start")
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)
        more = bool(message.get("more_body", False))
        if ex.dead:
            raise ClientDisconnected("client disconnected")
        head = None
        if not self.head_sent:
            status, (flat, npairs) = self.start_msg
            if not more and ex.server.respond_whole(ex, status, status_line(status), flat,
                                                    npairs, body):
                self.head_sent = self.complete = True
                return None
            framed = frame_response(ex, status, status_line(status), flat, npairs,
                                    None if more else len(body), None if more else body)
            self.op, self.length = framed.op, framed.length
            self.head_sent = True
            if framed.whole:
                # The whole response in one message: one write.
                self.complete = True
                if ex.server.send_whole(ex, framed):
                    return None
                return ex._push(END, framed.data())
            head = framed.data()
        if self.op >= 0 and self.length is not None:
            if body and self.sent + len(body) > self.length:
                self.head_sent = head is None  # nothing sent yet: a clean 500
                raise RuntimeError("response body longer than its Content-Length")
            if not more and self.sent + len(body) < self.length:
                self.head_sent = head is None
                raise RuntimeError("response body shorter than its Content-Length")
        if self.op >= 0:
            self.sent += len(body)
        if not more:
            self.complete = True
        return self._pieces(ex, head, body, more)

    async def _pieces(self, ex: AsgiExchange, head: Optional[bytes], body: bytes,
                      more: bool) -> None:
        if head is not None:
            await ex._push(RAW, head)
        if more:
            if self.op >= 0 and body:
                await ex._push(self.op, body)
        else:
            await ex._push(max(self.op, 0) | END, body if self.op >= 0 else b"")


class HttpCycle(AsgiExchange):
    """One HTTP request and its response."""

    __slots__ = ("response", "final")

    def __init__(self, server: HttpCore, conn: Connection, hm: HttpMessage,
                 loop: asyncio.AbstractEventLoop) -> None:
        scope, connection = http_scope(hm, conn.userdata, server._server_name, server._server_port,
                                       server.front)
        super().__init__(server, conn, scope, connection, loop)
        self.response = AsgiResponse()
        self.access = access_record(hm, scope["client"][0])
        #: The last body piece, kept as bytes until ``receive()`` asks for
        #: it: most applications never read a GET's empty body.
        self.final: Optional[bytes] = None

    def on_body(self, data: bytes, more: bool) -> None:
        if not more and self.inbox is None and self.event is None and len(data) < LOW_WATER:
            self.final = data  # nothing queued before it, nobody waiting
            return
        self.deliver({"type": "http.request", "body": data, "more_body": more}, len(data))

    def finished(self) -> bool:
        return self.disconnected or self.response.complete

    async def receive(self) -> Dict[str, Any]:
        """ASGI ``receive``: body pieces, then ``http.disconnect``."""
        final = self.final
        if final is not None:
            self.final = None
            return {"type": "http.request", "body": final, "more_body": False}
        message = await self._next()
        if message is None:
            return {"type": "http.disconnect"}
        return message

    def send(self, message: Dict[str, Any]) -> Awaitable[None]:
        """ASGI ``send`` for ``http.response.start`` and ``http.response.body``.

        Returns what the caller awaits: a message handled at once (the
        start, a whole response) returns the server's shared awaitable that
        is already done (``done``), so a response costs no coroutine per
        message (granian's ``send`` is not a coroutine either).  Misuse
        raises at the call."""
        kind = message["type"]
        if kind == "http.response.body":
            pending = self.response.body(self, message)
            return self.server.done if pending is None else pending  # type: ignore[attr-defined]
        if kind == "http.response.start":
            self.response.start(message)
            return self.server.done  # type: ignore[attr-defined,no-any-return]
        raise RuntimeError("unexpected ASGI message %r in an http scope" % (kind,))


class _Done:
    """An awaitable that is already done, without ``__del__``: what
    ``HttpCycle.send`` returns on PyPy (``asgi._Core.done``)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


DONE = _Done()
