"""Serve an ASGI 3.0 application (FastAPI, Starlette, ...) on Mongoose.

``serve(app)`` is the one-call form; ``ASGIServer`` runs inside an asyncio
program (``await server.start(url)`` ... ``await server.stop()``).  Mongoose
runs on a poll thread; the application runs on the asyncio loop that
called ``start``.  Supported: the ``http`` scope, the ``websocket`` scope
(with the ``websocket.http.response`` extension) and ``lifespan``.

How it behaves, compared with uvicorn, and with cymongoose 0.2.5 where this
module deliberately differs from it:

* **Keep-alive and pipelining work**: every request on a connection is
  answered, in order (0.2.5 answered only the first one).
* **Request bodies stream**: the application receives ``http.request``
  messages as the body arrives (``more_body`` True until the last), chunked
  uploads included, up to ``max_body_size`` (default 1 GiB; 413 above a
  declared length).  When the application reads more slowly than the
  client sends, the server stops reading from the socket (flow control).
  0.2.5 delivered one message with the whole body, at most 3 MiB.
* **Responses stream** as the application sends them, chunked unless it set
  ``Content-Length``; a response given in one message gets a
  ``Content-Length``.  ``send()`` waits while the client is behind, so
  memory stays bounded.  ``http.response.start`` is held until the first
  body message (as in 0.2.5), so a failure before any body still becomes a
  clean 500.
* **Disconnects**: ``receive()`` returns ``http.disconnect`` once the client
  has gone (or the response is complete), and ``send()`` then raises
  ``ClientDisconnected``, an ``OSError`` (ASGI spec 2.4, as uvicorn does);
  0.2.5 ignored sends after a disconnect.
* **WebSocket upgrades wait for the application**: ``websocket.accept``
  performs the handshake, with its ``subprotocol`` and ``headers``;
  ``websocket.close`` before accepting rejects it with ``403``, and
  ``websocket.http.response.*`` sends any other response.  ``subprotocols``
  is in the scope.  0.2.5 upgraded every request before the application
  ran, so it could not reject one or pick a subprotocol.
  ``websocket.disconnect`` carries the client's close code and reason
  (1006 when the connection just dropped; 0.2.5 always said 1000).
  Requires ``Connection.ws_upgrade``/``ws_send``.
* **Lifespan**: the scope carries a ``state`` dict, shallow-copied into
  every request scope, as uvicorn does (0.2.5 had none).  An application
  that fails startup (``lifespan.startup.failed``, or an exception after it
  received ``lifespan.startup``) makes ``start`` raise ``RuntimeError``
  with the reason; ``serve`` then logs it and exits with status 3.  An
  application that raises before reading the startup event, or returns
  without completing it, does not support lifespan and is served anyway.
* **Errors**: an exception in the application is logged with its traceback
  (logger ``cymongoose.asgi``); without a response started the client gets
  ``500 Internal Server Error``, otherwise the connection is closed.
* **Shutdown**: ``stop()`` (and ``serve`` on SIGINT/SIGTERM) stops
  accepting, closes idle connections, sends WebSocket clients close code
  1012, lets requests in flight finish for up to ``graceful_timeout``
  seconds, cancels what is left, then runs lifespan shutdown.  0.2.5
  cancelled everything at once.
* TLS is not offered: put a TLS-terminating proxy in front.
"""

import asyncio
import logging
import signal
import struct
import threading
import time
from collections import deque
from typing import (Any, Awaitable, Callable, Deque, Dict, List, MutableMapping, Optional,
                    Set, Tuple)
from urllib.parse import unquote

from . import _httpcore as core
from ._ffi import ffi
from ._httpcore import ClientDisconnected, _format_chunked_header, _status_line  # noqa: F401
from .connection import Connection
from .constants import WEBSOCKET_OP_BINARY, WEBSOCKET_OP_TEXT
from .messages import HttpMessage

__all__ = ["ASGIApp", "ASGIServer", "ClientDisconnected", "serve"]

#: An ASGI 3.0 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[Any], Awaitable[None]]], Awaitable[None]]

log = logging.getLogger("cymongoose.asgi")

_WS_OP_CLOSE = 8
_GRACEFUL_TIMEOUT = 30.0
_LIFESPAN_TIMEOUT = 5.0
_ASGI = {"version": "3.0", "spec_version": "2.4"}


def _scope_common(hm: Any, conn: Any, server_name: str, server_port: int,
                  scheme: str) -> Dict[str, Any]:
    uri, query = core.request_target(hm)
    client = list(core.peer_of(conn))
    proto = hm.proto or "HTTP/1.1"
    return {
        "asgi": dict(_ASGI),
        "http_version": proto.split("/", 1)[-1],
        "scheme": scheme + ("s" if conn.is_tls else ""),
        "path": unquote(uri),
        "raw_path": uri.encode("utf-8", "surrogateescape"),
        "query_string": query.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "headers": [[name.lower().encode("utf-8", "surrogateescape"),
                     value.encode("utf-8", "surrogateescape")] for name, value in hm.headers()],
        "client": client,
        "server": [server_name, server_port],
    }


def _build_http_scope(hm: Any, conn: Any, server_name: str, server_port: int) -> Dict[str, Any]:
    """The ``http`` scope of a request (``hm`` and ``conn`` as for
    ``cymongoose.wsgi._build_environ``; the body is not read)."""
    scope = _scope_common(hm, conn, server_name, server_port, "http")
    scope["type"] = "http"
    scope["method"] = hm.method
    return scope


def _build_ws_scope(hm: Any, conn: Any, server_name: str, server_port: int) -> Dict[str, Any]:
    """The ``websocket`` scope of an upgrade request."""
    scope = _scope_common(hm, conn, server_name, server_port, "ws")
    scope["type"] = "websocket"
    offered = hm.header("Sec-WebSocket-Protocol", "") or ""
    scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def _header_pairs(raw: Any) -> List[Any]:
    """ASGI ``headers`` as (str, str) pairs; CR, LF or NUL raise ``ValueError``."""
    pairs = []
    for name, value in raw or ():
        n = bytes(name).decode("latin-1")
        v = bytes(value).decode("latin-1")
        for part in (n, v):
            if "\r" in part or "\n" in part or "\0" in part:
                raise ValueError("header contains CR, LF or NUL: %r" % (part,))
        pairs.append((n, v))
    return pairs


def _is_disconnect(exc: BaseException) -> bool:
    """An exception that only reports the client's departure (ours, an
    ``OSError``, or a framework's rewording such as Starlette's)."""
    return isinstance(exc, OSError) or type(exc).__name__ == "ClientDisconnect"


class _ConnState(core.Exchange):
    """What the application of one request or WebSocket sees: its scope and
    the receive side, shared by the poll thread and the event loop."""

    __slots__ = ("scope", "loop", "inbox", "event", "unread", "fut", "disconnected",
                 "task")
    server: "_Core"

    def __init__(self, server: "_Core", conn: Connection, hm: HttpMessage,
                 scope: Dict[str, Any]) -> None:
        super().__init__(server, conn, hm.method, hm.proto, hm.header("Connection"))
        self.scope = scope
        self.loop = server._asgi._loop
        self.inbox: Deque[Tuple[Dict[str, Any], int]] = deque()  # (message, bytes)
        # Made on the loop thread: before Python 3.10 an Event binds to the
        # current thread's loop when created.
        self.event: Optional[asyncio.Event] = None
        self.unread = 0          # bytes delivered to the loop, not yet received
        self.fut: Optional["asyncio.Future[None]"] = None
        self.disconnected = False
        self.task: Optional["asyncio.Task[None]"] = None

    # -- poll thread -----------------------------------------------------------

    def deliver(self, message: Dict[str, Any], size: int) -> None:
        """Queue a message for ``receive()``; stop reading when too much waits."""
        if size:
            with self.lock:
                self.unread += size
                over = self.unread >= core._STREAM_THRESHOLD
            if over:
                self.server.pause(self.conn, True)
        self.loop.call_soon_threadsafe(self._put, message, size)

    def on_disconnect(self) -> None:
        self.loop.call_soon_threadsafe(self._lost)

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self._wake)

    # -- event loop --------------------------------------------------------------

    def _put(self, message: Dict[str, Any], size: int) -> None:
        self.inbox.append((message, size))
        if self.event is not None:
            self.event.set()

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
        with self.lock:
            before = self.unread
            self.unread -= size
            resume = before >= core._LOW_WATER > self.unread
        if resume:
            try:
                self.server.call_soon(self.server.resume_if_drained, self)
            except RuntimeError:
                pass  # the server is closed: nothing to resume

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
                if self.dead or self.queued < core._LOW_WATER:
                    return
                self.waiting = True
                fut = self.fut = self.loop.create_future()
            await fut

    async def _push(self, op: int, data: Any = b"") -> None:
        if self.push(op, data):
            await self._room()


class _Response:
    """The ``http.response.*`` messages of one response (event loop)."""

    __slots__ = ("ex", "start", "head_sent", "op", "length", "sent", "complete")

    def __init__(self, ex: _ConnState) -> None:
        self.ex = ex
        self.start: Optional[Any] = None
        self.head_sent = False
        self.op = core._RAW
        self.length: Optional[int] = None
        self.sent = 0
        self.complete = False

    async def send(self, message: Any, kind: str) -> None:
        """``kind`` is ``"start"`` or ``"body"``."""
        ex = self.ex
        if self.complete:
            raise RuntimeError("the response is already complete")
        if kind == "start":
            if self.start is not None:
                raise RuntimeError("the response has already started")
            status = int(message["status"])
            self.start = (status, _header_pairs(message.get("headers")))
            return
        if self.start is None:
            raise RuntimeError("response body sent before the response start")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if ex.dead:
            raise ClientDisconnected("client disconnected")
        if not self.head_sent:
            status, headers = self.start
            line = _status_line(status)
            head, self.op, self.length = core.frame_response(
                ex, status, line, headers, None if more else len(body))
            self.head_sent = True
            await ex._push(core._RAW, head)
        if self.op >= 0 and body:
            if self.length is not None and self.sent + len(body) > self.length:
                raise RuntimeError("response body longer than its Content-Length")
            self.sent += len(body)
            if more:
                await ex._push(self.op, body)
        if not more:
            if self.length is not None and self.sent < self.length and self.op >= 0:
                raise RuntimeError("response body shorter than its Content-Length")
            self.complete = True
            await ex._push(max(self.op, 0) | core._END, body if self.op >= 0 else b"")


class _HttpCycle(_ConnState):
    """One HTTP request and its response."""

    __slots__ = ("response",)

    def __init__(self, server: "_Core", conn: Connection, hm: HttpMessage) -> None:
        scope = _build_http_scope(hm, conn, server._server_name, server._server_port)
        super().__init__(server, conn, hm, scope)
        self.response = _Response(self)

    def on_body(self, data: bytes, more: bool) -> None:
        self.deliver({"type": "http.request", "body": data, "more_body": more}, len(data))

    def finished(self) -> bool:
        return self.disconnected or self.response.complete

    async def receive(self) -> Dict[str, Any]:
        """ASGI ``receive``: body pieces, then ``http.disconnect``."""
        message = await self._next()
        if message is None:
            return {"type": "http.disconnect"}
        return message

    async def send(self, message: Dict[str, Any]) -> None:
        """ASGI ``send`` for ``http.response.start`` and ``http.response.body``."""
        kind = message["type"]
        if kind == "http.response.start":
            await self.response.send(message, "start")
        elif kind == "http.response.body":
            await self.response.send(message, "body")
        else:
            raise RuntimeError("unexpected ASGI message %r in an http scope" % (kind,))


class _WsSession(_ConnState):
    """One WebSocket connection, from the upgrade request to the close."""

    __slots__ = ("key", "state", "close_code", "response")

    def __init__(self, server: "_Core", conn: Connection, hm: HttpMessage, key: str) -> None:
        scope = _build_ws_scope(hm, conn, server._server_name, server._server_port)
        super().__init__(server, conn, hm, scope)
        self.key = key
        self.state = "connecting"  # then "accepted", "closed" (we sent CLOSE) or "denied"
        self.close_code: Optional[Any] = None
        self.response: Optional[_Response] = None
        self.inbox.append(({"type": "websocket.connect"}, 0))

    def on_disconnect(self) -> None:
        peer = self.conn.userdata
        code = peer.ws_close if peer is not None and peer.ws_close else None
        self.loop.call_soon_threadsafe(self._closed, code)

    def _closed(self, code: Any) -> None:
        if self.close_code is None:
            self.close_code = code or (1006, "")
        self._lost()

    async def receive(self) -> Dict[str, Any]:
        """ASGI ``receive``: connect, messages, then ``websocket.disconnect``."""
        message = await self._next()
        if message is None:
            code, reason = self.close_code or (1006, "")
            return {"type": "websocket.disconnect", "code": code, "reason": reason}
        return message

    async def send(self, message: Dict[str, Any]) -> None:
        """ASGI ``send`` for the ``websocket.*`` messages."""
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != "accepted":
                raise RuntimeError("websocket.send while the WebSocket is %s" % self.state)
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            text = message.get("text")
            if text is not None:
                await self._push(core._WS | WEBSOCKET_OP_TEXT, text.encode("utf-8"))
            else:
                await self._push(core._WS | WEBSOCKET_OP_BINARY, bytes(message.get("bytes") or b""))
        elif kind == "websocket.accept":
            if self.state != "connecting":
                raise RuntimeError("websocket.accept while the WebSocket is %s" % self.state)
            headers = dict(_header_pairs(message.get("headers")))
            sub = message.get("subprotocol")
            if sub:
                headers["Sec-WebSocket-Protocol"] = sub
            self.state = "accepted"
            await self._push(core._CALL, lambda conn: self.server.ws_accept(conn, self.key, headers))
        elif kind == "websocket.close":
            if self.state == "connecting":
                self.state = "denied"
                self.close_after = True
                self.response = _Response(self)
                await self.response.send({"status": 403, "headers": [
                    (b"content-type", b"text/plain")]}, "start")
                await self.response.send({"body": b""}, "body")
            elif self.state == "accepted":
                self.state = "closed"
                code = int(message.get("code") or 1000)
                reason = message.get("reason") or ""
                if self.close_code is None:
                    self.close_code = (code, reason)
                payload = struct.pack("!H", code) + reason.encode("utf-8")
                if not self.disconnected:
                    await self._push(core._WS | _WS_OP_CLOSE, payload)
        elif kind in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.state == "connecting":
                self.state = "denied"
                self.close_after = True
                self.response = _Response(self)
            if self.state != "denied" or self.response is None:
                raise RuntimeError("%s after the WebSocket was accepted" % kind)
            await self.response.send(message, "start" if kind.endswith("start") else "body")
        else:
            raise RuntimeError("unexpected ASGI message %r in a websocket scope" % (kind,))


class _Core(core.HttpCore):
    """The poll-thread side of an ASGIServer."""

    log = log

    def __init__(self, asgi: "ASGIServer", error_handler: Any, max_body_size: int) -> None:
        super().__init__(error_handler, max_body_size)
        self._asgi = asgi

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> core.Exchange:
        ex = _HttpCycle(self, conn, hm)
        ex.loop.call_soon_threadsafe(self._asgi._spawn, ex)
        return ex

    def start_websocket(self, conn: Connection, hm: HttpMessage) -> Optional[core.Exchange]:
        key = hm.header("Sec-WebSocket-Key")
        if key is None or not hasattr(conn, "ws_upgrade"):
            return None
        ex = _WsSession(self, conn, hm, key)
        ex.body_done = True
        ex.loop.call_soon_threadsafe(self._asgi._spawn, ex)
        return ex

    def ws_accept(self, conn: Connection, key: str, headers: Dict[str, str]) -> None:
        """Complete the upgrade: ``ws_upgrade`` with a request holding the
        saved key (the real request's view died with its event)."""
        raw = key.encode("latin-1")
        hm = ffi.new("struct mg_http_message *")
        name = ffi.new("char[]", b"Sec-WebSocket-Key")
        value = ffi.new("char[]", raw)
        hm.headers[0].name.buf = name
        hm.headers[0].name.len = 17
        hm.headers[0].value.buf = value
        hm.headers[0].value.len = len(raw)
        view = HttpMessage._bind(int(ffi.cast("uintptr_t", hm)))
        try:
            conn.ws_upgrade(view, headers or None)
        finally:
            view._invalidate()

    def on_ws_message(self, conn: Connection, msg: Any) -> None:
        peer = conn.userdata
        ex = peer.ex if peer is not None else None
        if not isinstance(ex, _WsSession):
            return
        data = msg.data
        if msg.flags & 0x0F == WEBSOCKET_OP_BINARY:
            ex.deliver({"type": "websocket.receive", "bytes": data}, len(data))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            conn.ws_send(struct.pack("!H", 1007), _WS_OP_CLOSE)
            conn.drain()
            return
        ex.deliver({"type": "websocket.receive", "text": text}, len(data))

    def resume_if_drained(self, ex: _ConnState) -> None:
        """The application caught up: read from the client again."""
        with ex.lock:
            drained = ex.unread < core._LOW_WATER
        peer = ex.conn.userdata
        if drained and peer is not None and peer.ex is ex:
            self.pause(ex.conn, False)

    def shutdown_exchange(self, ex: core.Exchange) -> None:
        """WebSocket clients are told the server restarts (1012), as uvicorn does."""
        if isinstance(ex, _WsSession) and ex.conn.is_websocket:
            ex.conn.ws_send(struct.pack("!H", 1012), _WS_OP_CLOSE)
            ex.conn.drain()
            ex.loop.call_soon_threadsafe(ex._closed, (1012, ""))


class _Lifespan:
    """Runs the application's ``lifespan`` scope."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, mode: str) -> None:
        self.app = app
        self.loop = loop
        self.mode = mode
        self.state: Dict[str, Any] = {}
        self.inbox: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.startup_done: "asyncio.Future[Optional[str]]" = loop.create_future()
        self.shutdown_done: "asyncio.Future[Optional[str]]" = loop.create_future()
        self.received = 0
        self.supported = True
        self.task: Optional["asyncio.Task[None]"] = None

    async def startup(self) -> None:
        """Run startup; raises ``RuntimeError`` when the application fails it."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self.task = self.loop.create_task(self._main(scope))
        self.inbox.put_nowait({"type": "lifespan.startup"})
        outcome = await self.startup_done
        if outcome is not None:
            raise RuntimeError("ASGI lifespan startup failed: %s" % outcome)

    async def _main(self, scope: Dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self.received == 0 and self.mode == "auto":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
                self.supported = False
            else:
                log.error("Exception in 'lifespan' protocol", exc_info=True)
                self._settle(self.startup_done, "%s: %s" % (type(exc).__name__, exc))
                self._settle(self.shutdown_done, "%s: %s" % (type(exc).__name__, exc))
        finally:
            if not self.startup_done.done():
                self.supported = False  # returned without completing startup
            self._settle(self.startup_done, None)
            self._settle(self.shutdown_done, None)

    @staticmethod
    def _settle(fut: "asyncio.Future[Optional[str]]", value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    async def _receive(self) -> Dict[str, Any]:
        message = await self.inbox.get()
        self.received += 1
        return message

    async def _send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._settle(self.startup_done, None)
        elif kind == "lifespan.startup.failed":
            self._settle(self.startup_done, message.get("message", "") or "(no message)")
        elif kind == "lifespan.shutdown.complete":
            self._settle(self.shutdown_done, None)
        elif kind == "lifespan.shutdown.failed":
            self._settle(self.shutdown_done, message.get("message", "") or "(no message)")
        else:
            raise RuntimeError("unexpected ASGI message %r in the lifespan scope" % (kind,))

    async def shutdown(self) -> None:
        """Run shutdown (at most ``_LIFESPAN_TIMEOUT`` seconds)."""
        task = self.task
        if task is None or not self.supported or task.done():
            return
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self.shutdown_done), _LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("ASGI lifespan shutdown did not complete in %.0fs", _LIFESPAN_TIMEOUT)
            outcome = None
        if outcome is not None:
            log.error("ASGI lifespan shutdown failed: %s", outcome)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class ASGIServer:
    """An ASGI server for an asyncio program.

    Args:
        app: the ASGI 3.0 application.
        error_handler: called with exceptions of the event loop itself
            (never with application errors, which are logged).
        max_body_size: largest request body accepted (413 above it).
        graceful_timeout: how long ``stop()`` lets requests in flight finish.
        lifespan: ``"auto"`` (run it when the application supports it),
            ``"on"`` (an exception in it is a failure) or ``"off"``.
    """

    def __init__(self, app: ASGIApp, error_handler: Optional[Callable[[BaseException], Any]] = None,
                 max_body_size: int = core._MAX_BODY_SIZE,
                 graceful_timeout: float = _GRACEFUL_TIMEOUT, lifespan: str = "auto") -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        self._app = app
        self._error_handler = error_handler
        self._max_body = max_body_size
        self._graceful_timeout = graceful_timeout
        self._lifespan_mode = lifespan
        self._lifespan: Optional[_Lifespan] = None
        self._loop: Any = None
        self._core: Optional[_Core] = None
        self._thread: Optional[threading.Thread] = None
        self._tasks: "Set[asyncio.Task[None]]" = set()
        self._deadline: Optional[float] = None

    @property
    def manager(self) -> Any:
        """The ``Manager`` running the server; ``RuntimeError`` when not started."""
        if self._core is None:
            raise RuntimeError("ASGIServer is not started")
        return self._core.manager

    async def start(self, url: str = "http://127.0.0.1:8000") -> Connection:
        """Run lifespan startup, listen on ``url`` and start serving.

        Must be awaited inside a running loop; the application runs on it.
        Raises ``RuntimeError`` when lifespan startup fails (nothing is
        bound then), when the address cannot be bound, or when started twice.
        """
        if self._core is not None:
            raise RuntimeError("ASGIServer is already started")
        self._loop = asyncio.get_running_loop()
        if self._lifespan_mode != "off":
            self._lifespan = _Lifespan(self._app, self._loop, self._lifespan_mode)
            await self._lifespan.startup()
        server = _Core(self, self._error_handler, self._max_body)
        try:
            conn = server._listen(url)
        except BaseException:
            server.close()
            await self._shutdown_lifespan()
            raise
        self._core = server
        self._deadline = None
        self._thread = threading.Thread(target=self._poll, name="cymongoose-asgi-poll",
                                        daemon=True)
        self._thread.start()
        return conn

    def _poll(self) -> None:
        server = self._core
        assert server is not None
        mgr = server.manager
        while True:
            deadline = self._deadline
            if deadline is not None and (not server.busy or time.monotonic() >= deadline):
                return
            mgr.poll(100 if deadline is None else 20)

    def _spawn(self, ex: _ConnState) -> None:
        if isinstance(ex, _WsSession):
            coro = self._run_ws(ex)
        else:
            coro = self._run_http(ex)  # type: ignore[arg-type]
        task = self._loop.create_task(coro)
        ex.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _scope(self, ex: _ConnState) -> Dict[str, Any]:
        scope = ex.scope
        if self._lifespan is not None and self._lifespan.supported:
            scope["state"] = dict(self._lifespan.state)
        return scope

    async def _run_http(self, ex: _HttpCycle) -> None:
        response = ex.response
        try:
            await self._app(self._scope(ex), ex.receive, ex.send)
        except asyncio.CancelledError:
            ex.abort()
            raise
        except BaseException as exc:
            if ex.dead and _is_disconnect(exc):
                log.debug("client went away during %s %s", ex.method, ex.scope["path"])
            else:
                log.exception("Exception in ASGI application (%s %s)", ex.method,
                              ex.scope["path"])
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                ex.abort()
                raise
            await self._fail(ex, response)
            return
        if not response.complete:
            if response.start is None:
                log.error("ASGI application returned without starting a response (%s %s)",
                          ex.method, ex.scope["path"])
            else:
                log.error("ASGI application returned without completing the response (%s %s)",
                          ex.method, ex.scope["path"])
            await self._fail(ex, response)

    async def _fail(self, ex: _ConnState, response: Optional[_Response]) -> None:
        """500 when nothing was sent yet, else close the connection."""
        if ex.dead or (response is not None and response.complete):
            return
        if response is None or response.head_sent:
            ex.abort(flush=True)  # the client sees a truncated response
            return
        body = b"Internal Server Error"
        head = ("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                "Content-Length: %d\r\nDate: %s\r\n\r\n" % (len(body), core.http_date()))
        response.head_sent = response.complete = True
        try:
            await ex._push(core._RAW, head.encode("latin-1"))
            await ex._push(core._END, body)
        except ClientDisconnected:
            pass

    async def _run_ws(self, ex: _WsSession) -> None:
        try:
            await self._app(self._scope(ex), ex.receive, ex.send)
        except asyncio.CancelledError:
            ex.abort()
            raise
        except BaseException as exc:
            if not (ex.dead and _is_disconnect(exc)):
                log.exception("Exception in ASGI application (websocket %s)", ex.scope["path"])
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                ex.abort()
                raise
            if ex.state == "connecting":
                ex.state = "denied"
                await self._fail(ex, _Response(ex))
            elif ex.state == "denied":
                await self._fail(ex, ex.response)
            else:
                ex.abort()
            return
        if ex.state == "connecting":
            # Returning without accepting rejects the upgrade, as uvicorn does.
            ex.state = "denied"
            ex.close_after = True
            ex.response = _Response(ex)
            try:
                await ex.response.send({"status": 403, "headers": []}, "start")
                await ex.response.send({"body": b""}, "body")
            except ClientDisconnected:
                pass
        elif ex.state == "accepted" and not ex.disconnected:
            try:
                await ex._push(core._WS | _WS_OP_CLOSE, struct.pack("!H", 1000))
            except ClientDisconnected:
                pass

    async def stop(self) -> None:
        """Shut down gracefully (see the module docstring); safe to call after
        a failed ``start`` and more than once."""
        server, self._core = self._core, None
        if server is None:
            await self._shutdown_lifespan()
            return
        begun = self._loop.create_future()

        def shut() -> None:
            server.begin_shutdown()
            self._loop.call_soon_threadsafe(begun.set_result, None)

        deadline = time.monotonic() + self._graceful_timeout
        try:
            server.call_soon(shut)
            await asyncio.wait_for(begun, self._graceful_timeout)
        except (RuntimeError, asyncio.TimeoutError):
            pass
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._deadline = max(deadline, time.monotonic() + 1.0)
        try:
            server.call_soon(lambda: None)  # wake the poll thread to see the deadline
        except RuntimeError:
            pass
        thread = self._thread
        if thread is not None:
            await self._loop.run_in_executor(None, thread.join, self._graceful_timeout + 5)
        server.close()
        self._thread = None
        await self._shutdown_lifespan()

    async def _shutdown_lifespan(self) -> None:
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.shutdown()


async def _serve_async(app: ASGIApp, url: str, **options: Any) -> None:
    """Start a server, wait for SIGINT or SIGTERM, stop it."""
    server = ASGIServer(app, **options)
    conn = await server.start(url)
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or "127.0.0.1"
    addr = conn.local_addr
    print("cymongoose ASGI server on http://%s:%d/" % (host, addr[1] if addr else 0))
    print("  Press Ctrl+C to stop", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
    print("Server stopped.", flush=True)


def serve(app: ASGIApp, url: str = "http://127.0.0.1:8000", **options: Any) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM (blocking).

    ``options`` go to ``ASGIServer``.  When lifespan startup fails the
    reason is logged and the process exits with status 3, as uvicorn does.
    """
    try:
        asyncio.run(_serve_async(app, url, **options))
    except RuntimeError as exc:
        if not str(exc).startswith("ASGI lifespan startup failed"):
            raise
        log.error("%s", exc)
        log.error("Application startup failed. Exiting.")
        raise SystemExit(3) from None
