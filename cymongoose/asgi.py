"""Serve an ASGI 3.0 application (FastAPI, Starlette, ...) on Mongoose.

``serve(app)`` is the one-call form; ``ASGIServer`` runs inside an asyncio
program (``await server.start(url)`` ... ``await server.stop()``).  Mongoose
and the application share one thread: the asyncio loop that called
``start`` polls Mongoose whenever its epoll descriptor is ready
(``loop.add_reader``), so a request costs no thread hop and no wakeup.
Each request's application runs in a task and a context of its own (on
PyPy the task is shared by a connection's requests, which come one after
another: see ``_asgi_runner``).  Supported: the ``http`` scope, the ``websocket`` scope
(with the ``websocket.http.response`` extension) and ``lifespan``.

* **Keep-alive and pipelining**: every request on a connection is answered,
  in order.
* **Request bodies stream**: the application receives ``http.request``
  messages as the body arrives (``more_body`` True until the last), chunked
  uploads included, up to ``max_body_size`` (default 1 GiB; 413 above a
  declared length).  When the application reads more slowly than the
  client sends, the server stops reading from the socket (flow control).
* **Responses stream** as the application sends them, chunked unless it set
  ``Content-Length``; a response given in one message gets a
  ``Content-Length``.  ``send()`` waits while the client is behind, so
  memory stays bounded.  ``http.response.start`` is held until the first
  body message, so a failure before any body still becomes a clean 500.
  The status line carries Mongoose's reason phrase for the code.
* **Disconnects**: ``receive()`` returns ``http.disconnect`` once the client
  has gone (or the response is complete), and ``send()`` then raises
  ``ClientDisconnected``, an ``OSError``, as uvicorn does.
* **WebSocket upgrades wait for the application**: ``websocket.accept``
  performs the handshake, with its ``subprotocol`` and ``headers``;
  ``websocket.close`` before accepting rejects it with ``403``, and
  ``websocket.http.response.*`` sends any other response.  ``subprotocols``
  is in the scope.  ``websocket.disconnect`` carries the client's close
  code and reason (1006 when the connection just dropped).  Requires
  ``Connection.ws_upgrade``/``ws_send``.
* **Lifespan**: the scope carries a ``state`` dict, shallow-copied into
  every request scope, as uvicorn does.  An application that fails startup
  (``lifespan.startup.failed``, or an exception after it received
  ``lifespan.startup``) makes ``start`` raise ``LifespanError`` with the
  reason; ``serve`` then logs it and exits with status 3.  An application
  that raises before reading the startup event, or returns without
  completing it, does not support lifespan and is served anyway.
* **Errors**: an exception in the application is logged with its traceback
  (logger ``cymongoose.asgi``); without a response started the client gets
  ``500 Internal Server Error``, otherwise the connection is closed.
* **Shutdown**: ``stop()`` (and ``serve`` on SIGINT/SIGTERM) stops
  accepting, answers requests still arriving on kept-alive connections
  with ``Connection: close`` and closes those idle half a second later,
  sends WebSocket clients close code
  1012, lets requests in flight finish for up to ``graceful_timeout``
  seconds, cancels what is left, then runs lifespan shutdown.
* HTTPS: ``start(url, tls=TlsOpts(...))`` with an ``https://`` URL.
"""

import asyncio
import contextvars
import logging
import struct
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Set, Tuple, Union

from . import _log_writer
from ._asgi_exchange import DONE, AsgiExchange, AsgiResponse, HttpCycle
from ._asgi_lifespan import ASGIApp, Lifespan
from ._asgi_runner import PER_CONNECTION, ConnRunner, in_context, spawn
from ._asgi_websocket import WsSession
from ._http_exchange import END, MAX_BODY_SIZE, WS, WS_CLOSE, ClientDisconnected, Exchange
from ._http_server import HttpCore, _Peer
from ._ffi import lib
from ._http_writers import Framed, error_response
from ._loop_poller import LoopPoller
from ._signals import SignalStop
from ._ws_handshake import handshake_refusal
from .connection import Connection
from .errors import LifespanError
from .forwarded import DEFAULT_ALLOW, front_of
from .messages import HttpMessage

__all__ = ["ASGIApp", "ASGIServer", "ClientDisconnected", "serve"]

log = logging.getLogger("cymongoose.asgi")

_GRACEFUL_TIMEOUT = 30.0
#: Seconds between checks, at shutdown, that every connection has closed.
_DRAIN_CHECK = 0.01


def _is_disconnect(exc: BaseException) -> bool:
    """An exception that only reports the client's departure (ours, an
    ``OSError``, or a framework's rewording such as Starlette's)."""
    return isinstance(exc, OSError) or type(exc).__name__ == "ClientDisconnect"


class _Core(HttpCore):
    """Mongoose's side of an ASGIServer: starts exchanges as tasks."""

    log = log

    def __init__(self, asgi: "ASGIServer", error_handler: Any, max_body_size: int) -> None:
        super().__init__(error_handler, max_body_size)
        self._asgi = asgi
        self.poller: Optional[LoopPoller] = None
        #: What ``send`` returns for a message handled at once (``HttpCycle.send``).
        self.done: Awaitable[None] = DONE
        #: Requests started in the latest poll (``poller.polls``) so far.
        self._poll_seen = -1
        self._arrived = 0

    def _writable(self, ex: Exchange) -> Optional[Connection]:
        """``ex``'s connection when its response can go straight into
        Mongoose's send buffer: between polls, with nothing queued before
        it; else None."""
        if self._mgr._inside or ex.scheduled or ex.dead or self.poller is None:
            return None
        conn = ex.conn
        if conn._c is None or conn._closing:
            return None
        return conn

    def send_whole(self, ex: Exchange, framed: Framed) -> bool:
        """A whole response (head and body, framed) straight into Mongoose's
        send buffer (one C call), then out (``_sent``).  False when it
        must go through the outbox instead (inside a poll, or with a flush
        pending)."""
        conn = self._writable(ex)
        if conn is None:
            return False
        # No bracket (_calling_c): nothing write_whole calls into C fires an
        # event.
        self.write_whole(ex, conn, framed.buf, framed.size)
        self._sent(conn)
        return True

    def respond_whole(self, ex: Exchange, code: int, line: bytes, flat: bytes, npairs: int,
                      body: bytes) -> bool:
        conn = self._writable(ex)
        if conn is None or not self.frame_whole(ex, conn, code, line, flat, npairs, body,
                                                   len(body)):
            return False
        self._sent(conn)
        return True

    def _sent(self, conn: Connection) -> None:
        """A whole response is in ``conn``'s send buffer: when its request
        came alone in its poll, write it to the socket now, as uvicorn's
        ``transport.write`` does (no loop iteration and poll for it);
        otherwise, or when the socket did not take it all, ask for the poll
        that writes every queued response in one burst (vendor patch 0084),
        so a loaded client is woken once per burst, not per response."""
        c = conn._c
        if c is None or self._arrived > 1 or lib.cym_send_now(c):
            self.poller.soon()  # type: ignore[union-attr]

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> Exchange:
        asgi = self._asgi
        ex = HttpCycle(self, conn, hm, asgi._loop)
        poller = self.poller
        if poller is not None:
            if poller.polls != self._poll_seen:
                self._poll_seen = poller.polls
                self._arrived = 0
            self._arrived += 1
        asgi._spawn(ex)
        return ex

    def refuse_websocket(self, hm: HttpMessage) -> Optional[Tuple[int, str]]:
        return handshake_refusal(hm)

    def start_websocket(self, conn: Connection, hm: HttpMessage) -> Optional[Exchange]:
        key = hm.header("Sec-WebSocket-Key") or ""  # present: refuse_websocket checked it
        asgi = self._asgi
        ex = WsSession(self, conn, hm, key, asgi._loop)
        asgi._spawn(ex)
        return ex

    def on_ws_message(self, conn: Connection, msg: Any) -> None:
        peer = conn.userdata
        ex = peer.ex if peer is not None else None
        if isinstance(ex, WsSession):
            ex.on_message(conn, msg)

    def shutdown_exchange(self, ex: Exchange) -> None:
        if isinstance(ex, WsSession):
            ex.on_shutdown()

    def connection_closed(self, peer: _Peer) -> None:
        runner = peer.runner
        if runner is not None:
            peer.runner = None
            runner.retire()


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
        forwarded_allow_ips: peers whose proxy headers (``Forwarded``,
            ``X-Forwarded-For``/``-Proto``/``-Host``) set the scope's
            ``client``, ``scheme`` and ``server`` (see ``cymongoose.forwarded``).
        root_path: prefix the application is mounted under (scope
            ``root_path``).
    """

    def __init__(self, app: ASGIApp, error_handler: Optional[Callable[[BaseException], Any]] = None,
                 max_body_size: int = MAX_BODY_SIZE,
                 graceful_timeout: float = _GRACEFUL_TIMEOUT, lifespan: str = "auto",
                 forwarded_allow_ips: Union[str, Sequence[str], None] = DEFAULT_ALLOW,
                 root_path: str = "") -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        self._front = front_of(forwarded_allow_ips, root_path)
        self._app = app
        self._error_handler = error_handler
        self._max_body = max_body_size
        self._graceful_timeout = graceful_timeout
        self._lifespan_mode = lifespan
        self._lifespan: Optional[Lifespan] = None
        self._loop: Any = None
        self._core: Optional[_Core] = None
        self._poller: Optional[LoopPoller] = None
        #: Exchanges whose application still runs (a dict: ordered, and
        #: cheaper per request than a done callback).
        self._running: Dict[AsgiExchange, None] = {}
        #: The tasks serving connections (``_asgi_runner``).
        self._runners: Dict[ConnRunner, None] = {}
        self._per_connection = PER_CONNECTION

    @property
    def manager(self) -> Any:
        """The ``Manager`` running the server; ``RuntimeError`` when not started."""
        if self._core is None:
            raise RuntimeError("ASGIServer is not started")
        return self._core.manager

    async def start(self, url: str = "http://127.0.0.1:8000", tls: Any = None, *,
                    fd: Optional[int] = None) -> Connection:
        """Run lifespan startup, listen on ``url`` and start serving.

        ``tls``: a ``TlsOpts`` (``cert``, ``key``, and ``ca`` to require
        client certificates) to serve HTTPS; use an ``https://`` URL with it.
        With ``fd``, adopt that listening socket instead of binding ``url``
        (which then only names the server in the scope's ``server``).


        Must be awaited inside a running loop; the application runs on it.
        Raises ``LifespanError`` when lifespan startup fails (nothing is
        bound then), ``ListenError`` when the address cannot be bound, and
        ``RuntimeError`` when started twice.
        """
        if self._core is not None:
            raise RuntimeError("ASGIServer is already started")
        self._loop = asyncio.get_running_loop()
        if self._lifespan_mode != "off":
            self._lifespan = Lifespan(self._app, self._loop, self._lifespan_mode)
            await self._lifespan.startup()
        server = _Core(self, self._error_handler, self._max_body)
        server.front = self._front
        try:
            conn = server._listen(url, tls, fd)
        except BaseException:
            server.close()
            await self._shutdown_lifespan()
            raise
        self._core = server
        poller = self._poller = server.poller = LoopPoller(server.manager, self._loop)
        server.call_soon = poller.call_soon
        if not self._per_connection:
            # CPython: awaiting a done Future runs in C, a third of ``DONE``'s
            # cost (on PyPy a Future has a __del__, which costs its collector).
            done = self._loop.create_future()
            done.set_result(None)
            server.done = done
        return conn

    def _spawn(self, ex: AsgiExchange) -> None:
        """Run the application for ``ex``: on its connection's task, or on a
        task of its own (see ``_asgi_runner.PER_CONNECTION``)."""
        if self._per_connection:
            peer = ex.conn.userdata
            runner = peer.runner = spawn(self._runners, peer.runner, ex, self._loop,
                                         self._serve_connection)
            ex.task = runner.task
        elif type(ex) is HttpCycle:
            ex.task = self._loop.create_task(self._run_http(ex))
        else:
            ex.task = self._loop.create_task(self._run_ws(ex))  # type: ignore[arg-type]
        self._running[ex] = None

    def _call_app(self, ex: AsgiExchange) -> Awaitable[None]:
        """The application called for ``ex``, in a context of its own."""
        scope = ex.scope
        if self._lifespan is not None and self._lifespan.supported:
            scope["state"] = dict(self._lifespan.state)
        coro = self._app(scope, ex.receive, ex.send)  # type: ignore[attr-defined]
        if self._per_connection:
            return in_context(coro, contextvars.copy_context())
        return coro  # its task made the context

    async def _serve_connection(self, runner: ConnRunner, ex: Any) -> None:
        """A connection's task: its requests' applications, one at a time."""
        try:
            while ex is not None:
                if type(ex) is HttpCycle:
                    await self._run_http(ex)
                else:
                    await self._run_ws(ex)
                if runner.retired:
                    break
                # Not kept while idle: on PyPy the finished exchange would
                # survive each minor collection, then burden the major ones.
                ex = None
                runner.idle()
                await runner.wake
                ex = runner.taken()
        finally:
            runner.retired = True
            self._runners.pop(runner, None)

    async def _run_http(self, ex: HttpCycle) -> None:
        response = ex.response
        try:
            await self._call_app(ex)
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
        else:
            if not response.complete:
                if response.start_msg is None:
                    log.error("ASGI application returned without starting a response (%s %s)",
                              ex.method, ex.scope["path"])
                else:
                    log.error("ASGI application returned without completing the response "
                              "(%s %s)", ex.method, ex.scope["path"])
                await self._fail(ex, response)
        finally:
            self._running.pop(ex, None)

    async def _fail(self, ex: AsgiExchange, response: Optional[AsgiResponse]) -> None:
        """500 when nothing was sent yet, else close the connection."""
        if ex.dead or (response is not None and response.complete):
            return
        if response is None or response.head_sent:
            ex.abort(flush=True)  # the client sees a truncated response
            return
        response.head_sent = response.complete = True
        try:
            await ex._push(END, error_response(500))
        except ClientDisconnected:
            pass

    async def _run_ws(self, ex: WsSession) -> None:
        try:
            await self._serve_ws(ex)
        finally:
            self._running.pop(ex, None)

    async def _serve_ws(self, ex: WsSession) -> None:
        try:
            await self._call_app(ex)
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
                await self._fail(ex, AsgiResponse())
            elif ex.state == "denied":
                await self._fail(ex, ex.response)
            else:
                ex.abort()
            return
        if ex.state == "connecting":
            # Returning without accepting rejects the upgrade, as uvicorn does.
            ex.state = "denied"
            ex.close_after = True
            ex.response = AsgiResponse()
            try:
                ex.response.start({"status": 403, "headers": []})
                pending = ex.response.body(ex, {"body": b""})
                if pending is not None:
                    await pending
            except ClientDisconnected:
                pass
        elif ex.state == "accepted" and not ex.disconnected:
            try:
                await ex._push(WS | WS_CLOSE, struct.pack("!H", 1000))
            except ClientDisconnected:
                pass

    async def stop(self) -> None:
        """Shut down gracefully (see the module docstring); safe to call after
        a failed ``start`` and more than once."""
        server, self._core = self._core, None
        if server is None:
            await self._shutdown_lifespan()
            return
        poller = self._poller
        assert poller is not None
        deadline = time.monotonic() + self._graceful_timeout
        server.begin_shutdown()
        poller.soon()
        # Applications still running get until the deadline (their tasks go
        # on serving their connections, so it is the exchanges that count).
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_CHECK)
        await _cancel({ex.task for ex in self._running if ex.task is not None})
        # Responses of finished tasks may still be leaving: the poller runs
        # until every client connection has closed, or the deadline.
        deadline = max(deadline, time.monotonic() + 1.0)
        while server.busy and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_CHECK)
        poller.close()
        self._poller = None
        server.close()
        # Connections closed: their tasks ended, or end now.
        await _cancel({runner.task for runner in self._runners if runner.task is not None})
        await self._shutdown_lifespan()

    async def _shutdown_lifespan(self) -> None:
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.shutdown()


async def _cancel(tasks: Set["asyncio.Task[None]"]) -> None:
    """Cancel ``tasks`` and wait until they have ended."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


class _LoopStop(SignalStop):
    """A ``SignalStop`` that also wakes the asyncio loop awaiting ``wait()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._stopped = asyncio.Event()  # made on the loop's thread

    def set(self) -> None:
        super().set()
        self._loop.call_soon_threadsafe(self._stopped.set)

    def _on_signal(self, signum: int, frame: Any) -> None:
        super()._on_signal(signum, frame)
        self._loop.call_soon_threadsafe(self._stopped.set)

    async def wait(self) -> None:
        await self._stopped.wait()


async def run_until_signal(server: ASGIServer, url: str,
                           announce: Callable[[Connection], Any], tls: Any = None,
                           fd: Optional[int] = None) -> None:
    """Start ``server`` on ``url``, call ``announce(listener)``, serve until
    SIGINT or SIGTERM, then stop the server gracefully.

    The handlers are installed before ``start`` and the previous ones
    restored after ``stop``; off the main thread ``ValueError`` is raised
    before anything starts.  ``start``'s exceptions propagate
    (``ListenError``, ``LifespanError``).
    """
    stop = _LoopStop(asyncio.get_running_loop())
    with stop:
        listener = await server.start(url, tls, fd=fd)
        try:
            announce(listener)
            await stop.wait()
        finally:
            await server.stop()


def serve(app: ASGIApp, url: str = "http://127.0.0.1:8000", **options: Any) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM (blocking).

    ``options`` go to ``ASGIServer``.  Logging goes to stderr unless the
    application configured it.  When lifespan startup fails the reason is
    logged and the process exits with status 3, as uvicorn does.
    """
    def announce(conn: Connection) -> None:
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or "127.0.0.1"
        addr = conn.local_addr
        print("cymongoose ASGI server on http://%s:%d/" % (host, addr[1] if addr else 0))
        print("  Press Ctrl+C to stop", flush=True)

    _log_writer.configure(logging.INFO)  # unless the application configured logging
    server = ASGIServer(app, **options)
    try:
        asyncio.run(run_until_signal(server, url, announce))
    except LifespanError as exc:
        log.error("%s", exc)
        log.error("Application startup failed. Exiting.")
        raise SystemExit(3) from None
    print("Server stopped.", flush=True)
