"""Serve a WSGI application (PEP 3333) on the Mongoose event loop.

``serve(app)`` is the one-call form; ``WSGIServer`` gives control over
listening, running and stopping.  Mongoose runs on the thread that calls
``run()``; the application runs on a pool of ``workers`` threads, or with
``workers=0`` on that same thread (*inline*, as bjoern and meinheld run
it): no thread hop per request (about a quarter less CPU per request on
both interpreters), but an application that blocks (a database call, a
sleep) stops every other connection meanwhile.  The pool's threads run
under Linux's ``SCHED_BATCH`` (``_thread_policy``), and so do threads they
start.  A worker whose application runs alone writes a whole response to
the socket itself while the poll thread waits for I/O
(``_wsgi_exchange.Place``), rather than waking it up to send it.  Requests
that find the pool idle are run by the poll thread itself, after its poll,
in the pool's slots (at most ``workers`` applications run at once either
way); when none of them finishes for 1 to 2 ms, a standby thread polls in
its place and the requests not yet started go to the workers
(``_poll_standby``).

* **Keep-alive and pipelining**: every request on a connection is answered,
  in order.
* **Responses stream**: each non-empty piece of the iterable (and each
  ``write()``) is sent as it is produced, with ``Transfer-Encoding:
  chunked`` when the application set no ``Content-Length`` (a
  close-delimited body for HTTP/1.0 clients).  A one-element list or tuple
  is sent with a ``Content-Length``, as gunicorn does.  A producer faster
  than its client waits (flow control); a response that makes no progress
  for ``stream_timeout`` seconds is aborted and its connection closed.
  Inline, the poll thread never waits: it pulls the next piece of a
  streamed body only when Mongoose's send buffer has room.
* **The status line is the application's**: ``"HTTP/1.1 " + status``.
* **Request bodies** are read by the server before the application runs,
  into memory and past 1 MiB into a temporary file, as waitress does, so a
  slow upload never ties up a worker.  Bodies of any size up to
  ``max_body_size`` (default 1 GiB) work, chunked ones included; a larger
  declared ``Content-Length`` gets ``413``.  ``Expect: 100-continue`` is
  answered.
* **Environ strings follow PEP 3333**: ``PATH_INFO``, ``QUERY_STRING`` and
  header values carry the raw bytes as latin-1.  ``REMOTE_PORT`` and
  ``wsgi.input_terminated`` are set.  Request headers whose names contain
  ``_`` are dropped, as nginx and waitress do.
* **Errors**: an exception in the application is logged with its traceback
  (logger ``cymongoose.wsgi``) and answered ``500 Internal Server Error``
  when no byte of the response has been sent; otherwise the connection is
  closed, so the client sees a truncated response.  ``error_handler`` sees
  event-loop errors only.
* **Shutdown**: ``run()`` stops on SIGINT or SIGTERM (or ``stop()`` from
  any thread): it stops accepting, answers requests still arriving on
  kept-alive connections with ``Connection: close``, closes connections
  idle half a second later, lets in-flight requests finish for up to ``graceful_timeout`` seconds, then closes.
  Signal handlers are installed only on the main thread, and restored
  when ``run()`` returns.
* ``start_response`` follows PEP 3333 strictly: a second call without
  ``exc_info`` raises, a call with ``exc_info`` after the head was sent
  re-raises that exception.  The server adds ``Date`` and, when it matters,
  ``Connection``; hop-by-hop headers from the application are dropped
  because the server frames the body itself.
* WebSocket upgrades reach the application as ordinary requests.
* HTTPS: ``listen(url, tls=TlsOpts(...))`` with an ``https://`` URL.
"""

import functools
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Union

from . import _log_writer
from ._ffi import ffi, lib
from ._http_exchange import MAX_BODY_SIZE, Exchange
from ._http_server import HttpCore
from ._poll_standby import Standby
from ._signals import SignalStop, serve_until_signal
from ._thread_policy import run_as_helper
from ._wsgi_environ import FileWrapper
from ._wsgi_exchange import InlineExchange, Place, WsgiExchange, run_exchange, run_inline
from .forwarded import DEFAULT_ALLOW, front_of
from .connection import Connection
from .messages import HttpMessage

__all__ = ["WSGIApp", "FileWrapper", "WSGIServer", "serve"]

# Public here, defined beside the environ that uses it.
FileWrapper.__module__ = __name__

#: A WSGI application: ``app(environ, start_response) -> iterable of bytes``.
WSGIApp = Callable[..., Any]

log = logging.getLogger("cymongoose.wsgi")

#: Default ``stream_timeout``: seconds a response may make no progress.
_STREAM_TIMEOUT = 5.0
_GRACEFUL_TIMEOUT = 30.0


class WSGIServer:
    """A WSGI server: Mongoose on the thread that calls ``run()``, the
    application on a pool of ``workers`` threads (or on that thread with
    ``workers=0``).

    Args:
        app: the WSGI application.
        workers: how many applications run at once, on the pool's threads
            (requests that find the pool idle run on the poll thread, in
            one of those slots); 0 runs them inline on the poll thread (for
            applications that never block).
        error_handler: called with exceptions of the event loop itself
            (never with application errors, which are logged).
        stream_timeout: seconds a response may make no progress because the
            client reads nothing; then it is aborted.  May be changed later.
        max_body_size: largest request body accepted (413 above it).
        graceful_timeout: how long ``run()`` lets in-flight requests finish
            after a stop request.
        forwarded_allow_ips: peers whose proxy headers (``Forwarded``,
            ``X-Forwarded-For``/``-Proto``/``-Host``) set ``REMOTE_ADDR``,
            ``wsgi.url_scheme`` and ``HTTP_HOST`` (see ``cymongoose.forwarded``).
        root_path: prefix the application is mounted under (``SCRIPT_NAME``).
    """

    def __init__(self, app: WSGIApp, workers: int = 4,
                 error_handler: Optional[Callable[[BaseException], Any]] = None,
                 stream_timeout: float = _STREAM_TIMEOUT,
                 max_body_size: int = MAX_BODY_SIZE,
                 graceful_timeout: float = _GRACEFUL_TIMEOUT,
                 forwarded_allow_ips: Union[str, Sequence[str], None] = DEFAULT_ALLOW,
                 root_path: str = "") -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError("workers must be an int >= 0 (0: run the app inline)")
        self._app = app
        self._workers = workers
        self._stream_timeout = stream_timeout
        self._graceful_timeout = graceful_timeout
        self._pool = _Pool(app, workers) if workers else None
        self._core = _Core(self, error_handler, max_body_size)
        self._core.front = front_of(forwarded_allow_ips, root_path)
        self._stop = SignalStop(required=False)

    @property
    def manager(self) -> Any:
        """The ``Manager`` running the server."""
        return self._core.manager

    @property
    def _server_name(self) -> str:
        return self._core._server_name

    @property
    def _server_port(self) -> int:
        return self._core._server_port

    def listen(self, url: str = "http://127.0.0.1:8000", tls: Any = None, *,
               fd: Optional[int] = None) -> Connection:
        """Listen on ``url`` (port 0 picks a free port: see ``local_addr``).

        ``tls``: a ``TlsOpts`` (``cert``, ``key``, and ``ca`` to require
        client certificates) to serve HTTPS on this listener; use an
        ``https://`` URL with it.  With ``fd``, adopt that listening socket
        instead (``url`` then only names the server in ``SERVER_NAME``).
        Raises ``ListenError`` when the address cannot be bound,
        ``ValueError`` when ``fd`` is not a listening socket, and
        ``TypeError``/``ValueError`` for unusable ``tls``.
        """
        return self._core._listen(url, tls, fd)

    def run(self, poll_ms: int = 100) -> None:
        """Serve until SIGINT, SIGTERM or ``stop()``, then shut down gracefully.

        On the main thread, SIGINT and SIGTERM handlers are installed for
        the duration of the call and the previous ones restored on the way
        out; on other threads only ``stop()`` ends it.  After the stop
        request no new connection is accepted, kept-alive connections get
        ``Connection: close`` or (idle) close after half a second, and
        requests in flight get up to ``graceful_timeout`` seconds to finish;
        then ``close()``.
        """
        mgr = self._core.manager

        def finish(stop: SignalStop) -> None:
            self._core.begin_shutdown()
            deadline = time.monotonic() + self._graceful_timeout
            while self._core.busy and time.monotonic() < deadline:
                mgr.poll(min(poll_ms, 50))

        core = self._core
        # A partial, not a lambda: one Python call less per poll, which a
        # lone request pays in full.  Inline, the core adds nothing to the
        # Manager's poll.
        step = functools.partial(mgr.poll if core._inline else core.poll, poll_ms)
        serve_until_signal(step, finish=finish, cleanup=self.close, stop=self._stop)

    def stop(self) -> None:
        """Ask ``run()`` to shut down (thread-safe; signal handlers call it too)."""
        self._stop.set()
        try:
            self._core.call_soon(lambda: None)  # wake the poll to see the flag
        except RuntimeError:
            pass  # closed: run() is over or sees the flag on its next poll

    def close(self) -> None:
        """Stop at once: drop queued requests, close every connection and the
        Manager.  Responses still being produced are cut off."""
        if self._pool is not None:
            self._pool.shutdown()
        self._core.close()


class _Pool:
    """The worker threads: each takes the next exchange from one queue.

    Cheaper per request than ``concurrent.futures`` (no ``Future``, no
    condition variable per task).  The poll thread may run exchanges too,
    in one of the same ``size`` slots (``take_slot``).  The threads start
    with the first request and are daemons, so an application stuck in a
    call cannot keep the process alive after ``close()``.  Each runs under
    ``SCHED_BATCH``: one woken with a request waits for the poll thread to
    block rather than preempting it only to find the GIL taken (on one core
    that churn was a fifth of a hello-world request's CPU: bench/README.md,
    "Ninth pass").
    """

    def __init__(self, app: WSGIApp, size: int) -> None:
        self._app = app
        self._size = size
        self._queue: "queue.SimpleQueue[Optional[WsgiExchange]]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._closed = False
        #: Idents of the threads running an application now: at most
        #: ``size``, the poll thread included (``take_slot``).
        self._running: Set[int] = set()
        self._slot_lock = threading.Lock()
        self._slots = threading.Condition(self._slot_lock)
        self._slot_waiters = 0  # threads waiting in take_slot

    def submit(self, ex: WsgiExchange) -> None:
        """Queue ``ex``; raises ``RuntimeError`` after ``shutdown``."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        if not self._threads:
            for i in range(self._size):
                t = threading.Thread(target=self._work, name="cymongoose-wsgi-%d" % i,
                                     daemon=True)
                t.start()
                self._threads.append(t)
        self._queue.put(ex)

    def _work(self) -> None:
        run_as_helper()
        get, app, enter, leave = self._queue.get, self._app, self.take_slot, self.give_slot
        me = threading.get_ident()
        while True:
            ex = get()
            if ex is None:
                return
            enter(me, True)
            try:
                run_exchange(app, ex)
            finally:
                leave(me)

    def take_slot(self, me: int, wait: bool) -> bool:
        """Take a slot for thread ``me``: with ``wait``, until one is free
        (only while the poll thread runs one can none be); else False at
        once when none is (the poll thread, for the batch it runs:
        ``Standby``)."""
        with self._slot_lock:
            if len(self._running) >= self._size:
                if not wait:
                    return False
                self._slot_waiters += 1
                try:
                    while len(self._running) >= self._size:
                        self._slots.wait()
                finally:
                    self._slot_waiters -= 1
            self._running.add(me)
        return True

    def give_slot(self, me: int) -> None:
        """Give back the slot of thread ``me`` (``take_slot``)."""
        with self._slot_lock:
            self._running.discard(me)
            if self._slot_waiters:
                self._slots.notify()

    def shutdown(self) -> None:
        """Let each thread finish its request and exit; queued ones are dropped."""
        self._closed = True
        while True:
            try:
                ex = self._queue.get_nowait()
            except queue.Empty:
                break
            if ex is not None:
                ex.mark_dead()
        for _ in self._threads:
            self._queue.put(None)


class _Core(HttpCore):
    """The poll-thread side of a WSGIServer."""

    log = log

    def __init__(self, server: WSGIServer, error_handler: Any, max_body_size: int) -> None:
        super().__init__(error_handler, max_body_size)
        self._server = server
        self._inline = server._pool is None
        #: Lets a worker write a whole response while the poll thread waits
        #: in epoll_wait (``_csrc/park.c``); the Manager keeps its C part
        #: alive and detaches it when freed.
        self._place: Optional[Place] = None
        if server._pool is not None:
            park = lib.cym_park_new(self._mgr._cm)
            if park == ffi.NULL:
                raise MemoryError("cannot allocate the WSGI server's park")
            self._mgr._park = ffi.gc(park, lib.cym_park_free)
            pool = server._pool
            self._place = Place(self._mgr._park, pool._running, pool._queue)
            self._standby = Standby(self._mgr, pool.take_slot, pool.give_slot,
                                    functools.partial(run_exchange, server._app),
                                    self._hand_off, self._standby_poll)
        #: Set around ``run()``'s own polls: only then may ``_submit`` keep
        #: requests for the poll thread (``Standby.batch``).
        self._deferring = False
        self._poll_ms = 100
        #: Inline exchanges whose body waits for room in the send buffer.
        self._pumping: Dict[InlineExchange, None] = {}
        self._stall_timer: Any = None

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> Exchange:
        if self._inline:
            return InlineExchange(self, conn, hm, self._server._stream_timeout, self._run_inline,
                                  False)
        return WsgiExchange(self, conn, hm, self._server._stream_timeout, self._submit,
                            place=self._place)

    def _submit(self, ex: WsgiExchange) -> None:
        if self._deferring:
            batch = self._standby.batch
            # The pool idle (no application running, none queued; read
            # through the place, once per request): the poll thread runs
            # it after this poll.
            if batch or (not self._place.running  # type: ignore[union-attr]
                         and self._place.queue.empty()):  # type: ignore[union-attr]
                batch.append(ex)
                return
        self._hand_off(ex)

    def _hand_off(self, ex: WsgiExchange) -> None:
        """Queue ``ex`` for the pool's workers."""
        pool = self._server._pool
        assert pool is not None
        ex.held = False  # no poll follows a worker's response by itself
        try:
            pool.submit(ex)
        except RuntimeError:  # the pool is shut down: the server is closing
            ex.mark_dead()

    def poll(self, poll_ms: int) -> None:
        """``run()``'s poll: the requests that found the pool idle are then
        run on this thread, the standby polling if they take long
        (``_poll_standby``)."""
        self._poll_ms = poll_ms
        self._deferring = self._place is not None
        try:
            self._mgr.poll(poll_ms)
        finally:
            self._deferring = False
        if self._place is not None and self._standby.batch:
            self._standby.run()

    def _standby_poll(self) -> None:
        """The standby's poll, in place of ``run()``'s: it also starts the
        shutdown that ``stop()`` asks for (``run()`` finishes it)."""
        self._mgr.poll(self._poll_ms)
        if self._server._stop.stopped:
            self.begin_shutdown()

    def close(self) -> None:
        if self._place is not None:
            self._standby.close()
        super().close()

    def _run_inline(self, ex: WsgiExchange) -> None:
        assert isinstance(ex, InlineExchange)
        if not run_inline(self._server._app, ex):
            self._wait_for_room(ex)

    def _wait_for_room(self, ex: InlineExchange) -> None:
        """The client is behind: continue ``ex`` on MG_EV_WRITE, and watch
        that it makes progress within ``stream_timeout``."""
        self._pumping[ex] = None
        self.watch_write(ex, True)
        if self._stall_timer is None:
            period = max(10, min(1000, int(self._server._stream_timeout * 250)))
            self._stall_timer = self._mgr.timer_add(period, self._check_stalled, repeat=True)

    def flush(self, ex: Exchange) -> None:
        if not isinstance(ex, InlineExchange):
            super().flush(ex)
            return
        if ex.dead or ex.ended:
            self._pumping.pop(ex, None)
        elif ex.resume():
            self._pumping.pop(ex, None)
            if not ex.ended:
                self.watch_write(ex, False)

    def _check_stalled(self) -> None:
        if not self._pumping:
            return
        timeout = self._server._stream_timeout
        now = time.monotonic()
        for ex in list(self._pumping):
            if ex.dead or ex.ended:
                self._pumping.pop(ex, None)
            elif now - ex.last_progress >= timeout:
                self._pumping.pop(ex, None)
                log.warning("%s %s: client read nothing for %.1fs, response aborted",
                            ex.method, ex.environ.get("PATH_INFO"), timeout)
                ex.on_disconnect()  # closes the application's iterable
                ex.abort()


def serve(app: WSGIApp, url: str = "http://127.0.0.1:8000", workers: int = 4,
          stream_timeout: float = _STREAM_TIMEOUT) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM (blocking).

    Prints where it listens, then runs a ``WSGIServer`` (see its docstring).
    Logging goes to stderr unless the application configured it.
    """
    _log_writer.configure(logging.INFO)  # unless the application configured logging
    server = WSGIServer(app, workers=workers, stream_timeout=stream_timeout)
    conn = server.listen(url)
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or "127.0.0.1"
    addr = conn.local_addr
    port = addr[1] if addr else 0
    print("cymongoose WSGI server on http://%s:%d/" % (host, port))
    print("  Workers: %s" % (workers or "inline"))
    print("  Press Ctrl+C to stop", flush=True)
    server.run()
