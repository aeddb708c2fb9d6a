"""Serve a WSGI application (PEP 3333) on the Mongoose event loop.

``serve(app)`` is the one-call form; ``WSGIServer`` gives control over
listening, running and stopping.  Mongoose runs on the thread that calls
``run()``; the application runs on a pool of ``workers`` threads.

How it behaves, compared with the servers WSGI users know (gunicorn,
waitress), and with cymongoose 0.2.5 where this module deliberately differs
from it:

* **Keep-alive and pipelining work**: every request on a connection is
  answered, in order.  0.2.5 wrote responses with raw ``send()``, which
  left Mongoose's response-in-progress mark set, so only the first request
  of a keep-alive connection was ever answered.
* **Responses stream**: each non-empty piece of the iterable (and each
  ``write()``) is sent as it is produced, with ``Transfer-Encoding:
  chunked`` when the application set no ``Content-Length`` (a close-delimited
  body for HTTP/1.0 clients).  A one-element list or tuple is sent with a
  ``Content-Length``, as gunicorn does.  0.2.5 buffered bodies up to 1 MiB.
  A producer faster than its client waits (flow control) instead of
  buffering without bound; a response that makes no progress for
  ``stream_timeout`` seconds is aborted and its connection closed (0.2.5:
  the same timeout on its queue).
* **The status line is the application's**: ``"HTTP/1.1 " + status``, reason
  phrase included (0.2.5 replaced the phrase from its own table).
* **Request bodies** are read by the server before the application runs,
  into memory and past 1 MiB into a temporary file, as waitress does, so a
  slow upload never ties up a worker.  Bodies of any size up to
  ``max_body_size`` (default 1 GiB) work, chunked ones included (0.2.5:
  3 MiB, Mongoose's receive cap); a larger declared ``Content-Length`` gets
  ``413 Content Too Large``.  ``Expect: 100-continue`` is answered.
* **Environ strings follow PEP 3333**: ``PATH_INFO``, ``QUERY_STRING`` and
  header values carry the raw bytes as latin-1 (0.2.5 decoded the path as
  UTF-8, which frameworks then decode a second time).  ``REMOTE_PORT`` and
  ``wsgi.input_terminated`` are set.  Request headers whose names contain
  ``_`` are dropped, as nginx and waitress do, so ``X_User`` cannot pose as
  ``X-User``.
* **Errors**: an exception in the application is logged with its traceback
  (logger ``cymongoose.wsgi``) and answered ``500 Internal Server Error``
  when no byte of the response has been sent; otherwise the connection is
  closed, so the client sees a truncated response.  The server keeps
  serving.  ``error_handler`` sees event-loop errors only.
* **Shutdown**: ``run()`` stops on SIGINT or SIGTERM (or ``stop()`` from
  any thread): it stops accepting, closes idle connections, lets in-flight
  requests finish for up to ``graceful_timeout`` seconds, then closes.
  Signal handlers are installed only on the main thread (0.2.5 failed
  elsewhere) and, as in 0.2.5, not restored.
* ``start_response`` follows PEP 3333 strictly: a second call without
  ``exc_info`` raises (0.2.5 overwrote the headers), a call with
  ``exc_info`` after the head was sent re-raises that exception.  The
  server adds ``Date`` and, when it matters, ``Connection``; hop-by-hop
  headers from the application (``Transfer-Encoding``, ...) are dropped
  because the server frames the body itself.
* WebSocket upgrades reach the application as ordinary requests.  TLS is not
  offered: put a TLS-terminating proxy in front.

Internals: 0.2.5 carried responses to the poll thread inside wakeup payloads
(inline or stashed, ``_stash``, ``_streams``, ``_WAKEUP_MAX_BYTES``,
``_STREAM_QUEUE_SIZE``); here workers queue them in a per-request outbox and
ring an empty doorbell (see ``cymongoose._httpcore``), so no payload size
limit applies.  ``_STREAM_THRESHOLD``, ``_STREAM_BATCH_SIZE`` and
``_STREAM_PUT_TIMEOUT`` keep their names for the flow-control limits.
"""

import io
import logging
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from . import _httpcore as core
from ._httpcore import (  # noqa: F401  (0.2.5's private names live here)
    _MAX_BODY_SIZE, _REASON, _STREAM_BATCH_SIZE, _STREAM_PUT_TIMEOUT, _STREAM_THRESHOLD,
    _format_chunked_header, _status_line,
)
from .connection import Connection
from .messages import HttpMessage

__all__ = ["WSGIApp", "FileWrapper", "WSGIServer", "serve"]

#: A WSGI application: ``app(environ, start_response) -> iterable of bytes``.
WSGIApp = Callable[..., Any]

log = logging.getLogger("cymongoose.wsgi")

#: Request bodies above this size are spooled to a temporary file.
_SPOOL_SIZE = 1024 * 1024
_GRACEFUL_TIMEOUT = 30.0


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks.

    Iterates ``filelike.read(blksize)`` until it returns an empty value;
    ``str`` blocks are encoded as UTF-8.  ``close()`` closes ``filelike``
    when it has a ``close`` method.
    """

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if not data:
            raise StopIteration
        if isinstance(data, str):
            return data.encode()
        block: bytes = data
        return block


def _build_environ(hm: Any, conn: Any, server_name: str, server_port: int) -> Dict[str, Any]:
    """The PEP 3333 environ of a request.

    ``hm`` needs ``method``, ``uri``, ``query``, ``proto``, ``body_bytes``,
    ``header(name, default)`` and ``headers()``; ``conn`` needs ``is_tls``
    and ``remote_addr``.  ``wsgi.input`` reads ``hm.body_bytes``.
    """
    return _environ(hm, conn, server_name, server_port, hm.body_bytes)


def _environ(hm: Any, conn: Any, server_name: str, server_port: int,
             body: bytes) -> Dict[str, Any]:
    uri, query = core.request_target(hm)
    ip, port = core.peer_of(conn)
    environ = {
        "REQUEST_METHOD": hm.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(uri).decode("latin-1"),
        "QUERY_STRING": core.wsgi_str(query),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": hm.proto or "HTTP/1.1",
        "REMOTE_ADDR": ip,
        "REMOTE_HOST": ip,
        "REMOTE_PORT": str(port),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if conn.is_tls else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }
    for name, value in hm.headers():
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        value = core.wsgi_str(value)
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
            continue
        key = "HTTP_" + key
        old = environ.get(key)
        environ[key] = value if old is None else old + ", " + value
    return environ


class _Stalled(Exception):
    """The client took no data for ``stream_timeout`` seconds."""


class _WsgiExchange(core.Exchange):
    __slots__ = ("environ", "spool", "cond", "timeout")
    server: "_Core"

    def __init__(self, server: "_Core", conn: Connection, hm: HttpMessage) -> None:
        super().__init__(server, conn, hm.method, hm.proto, hm.header("Connection"))
        self.cond = threading.Condition(self.lock)
        # At MG_EV_HTTP_HDRS the body is not read yet: on_body delivers it.
        self.environ = _environ(hm, conn, server._server_name, server._server_port, b"")
        self.spool: Any = None
        self.timeout = server._server._stream_timeout

    def on_body(self, data: bytes, more: bool) -> None:
        if more or self.spool is not None:
            if self.spool is None:
                self.spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_SIZE)
            self.spool.write(data)
            if more:
                return
            stream = self.spool
            length = stream.tell()
            stream.seek(0)
        else:
            stream = self.spool = io.BytesIO(data)
            length = len(data)
        environ = self.environ
        environ["wsgi.input"] = stream
        # A chunked body has been decoded: describe it by its length.
        if environ.pop("HTTP_TRANSFER_ENCODING", None) is not None or "CONTENT_LENGTH" in environ:
            environ["CONTENT_LENGTH"] = str(length)
        self.server._submit(self)

    def on_disconnect(self) -> None:
        spool = self.spool
        if spool is not None and not self.body_done:
            spool.close()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def send(self, op: int, data: bytes = b"") -> None:
        """Queue response bytes; waits while the client is behind (worker thread)."""
        if not self.push(op, data):
            return
        timeout = self.timeout
        with self.cond:
            before = self.progress
            deadline = time.monotonic() + timeout
            while self.queued >= core._LOW_WATER and not self.dead:
                self.waiting = True
                now = time.monotonic()
                if self.progress != before:
                    before = self.progress
                    deadline = now + timeout
                if now >= deadline:
                    raise _Stalled()
                self.cond.wait(deadline - now)
        if self.dead:
            raise core.ClientDisconnected("client disconnected")


class _Response:
    """``start_response``, ``write`` and the framing of one response (worker thread)."""

    __slots__ = ("ex", "status", "headers", "head_sent", "op", "length", "sent")

    def __init__(self, ex: _WsgiExchange) -> None:
        self.ex = ex
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.head_sent = False
        self.op = core._RAW
        self.length: Optional[int] = None  # Content-Length the body must match
        self.sent = 0

    def start_response(self, status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() \
                or status[3] != " ":
            raise ValueError("invalid WSGI status %r" % (status,))
        checked = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("WSGI header names and values must be str")
            for part in (name, value):
                if "\r" in part or "\n" in part or "\0" in part:
                    raise ValueError("header contains CR, LF or NUL: %r" % (part,))
            checked.append((name, value))
        self.status = status
        self.headers = checked
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable of ``start_response``: send ``data`` now."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if data:
            self._send(data, None)

    def _head(self, total: Optional[int]) -> None:
        """Send the head; ``total`` is the body length when already known."""
        status = self.status
        assert status is not None
        head, self.op, self.length = core.frame_response(
            self.ex, int(status[:3]), "HTTP/1.1 " + status, self.headers, total)
        self.head_sent = True
        self.ex.send(core._RAW, head)

    def _send(self, data: bytes, total: Optional[int]) -> None:
        if not self.head_sent:
            self._head(total)
        if self.op < 0:
            return
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room]  # never more than the declared length
            if not data:
                return
        self.sent += len(data)
        self.ex.send(self.op, data)

    def run(self, app: WSGIApp) -> None:
        """Call the application and send everything it produces."""
        ex = self.ex
        result = app(ex.environ, self.start_response)
        try:
            if self.status is None:
                # PEP 3333 lets an application call start_response as late
                # as its first piece of output.
                it = iter(result)
                first = next(it, None)
                if self.status is None:
                    raise AssertionError("the application did not call start_response")
                pieces: Iterable[Any] = it if first is None else _chain(first, it)
            else:
                pieces = result
            total = None
            if isinstance(result, (list, tuple)) and len(result) == 1:
                total = len(result[0])
            for data in pieces:
                if data:
                    if isinstance(data, str):
                        data = data.encode("latin-1")
                    self._send(data, total)
            if not self.head_sent:
                self._head(0 if total is None else total)
            if self.length is not None and self.sent < self.length:
                ex.abort(flush=True)  # short body: only closing can end it
                return
            ex.send(max(self.op, 0) | core._END)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


class WSGIServer:
    """A WSGI server: Mongoose on the thread that calls ``run()``, the
    application on ``workers`` threads.

    Args:
        app: the WSGI application.
        workers: size of the thread pool that runs it.
        error_handler: called with exceptions of the event loop itself
            (never with application errors, which are logged).
        stream_timeout: seconds a response may make no progress because the
            client reads nothing; then it is aborted.  May be changed later.
        max_body_size: largest request body accepted (413 above it).
        graceful_timeout: how long ``run()`` lets in-flight requests finish
            after a stop request.
    """

    def __init__(self, app: WSGIApp, workers: int = 4,
                 error_handler: Optional[Callable[[BaseException], Any]] = None,
                 stream_timeout: float = _STREAM_PUT_TIMEOUT,
                 max_body_size: int = _MAX_BODY_SIZE,
                 graceful_timeout: float = _GRACEFUL_TIMEOUT) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._app = app
        self._workers = workers
        self._stream_timeout = stream_timeout
        self._graceful_timeout = graceful_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cymongoose-wsgi")
        self._core = _Core(self, error_handler, max_body_size)
        self._stop = threading.Event()

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

    def listen(self, url: str = "http://127.0.0.1:8000") -> Connection:
        """Listen on ``url`` (port 0 picks a free port: see ``local_addr``).

        Raises ``RuntimeError`` when the address cannot be bound.
        """
        return self._core._listen(url)

    def run(self, poll_ms: int = 100) -> None:
        """Serve until SIGINT, SIGTERM or ``stop()``, then shut down gracefully.

        On the main thread, SIGINT and SIGTERM handlers are installed (and
        left in place).  After the stop request no new connection is
        accepted, idle connections close, and requests in flight get up to
        ``graceful_timeout`` seconds to finish; then ``close()``.
        """
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Any) -> None:
                self._stop.set()

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
        mgr = self._core.manager
        try:
            while not self._stop.is_set():
                mgr.poll(poll_ms)
            self._core.begin_shutdown()
            deadline = time.monotonic() + self._graceful_timeout
            while self._core.busy and time.monotonic() < deadline:
                mgr.poll(min(poll_ms, 50))
        finally:
            self.close()

    def stop(self) -> None:
        """Ask ``run()`` to shut down (thread-safe; signal handlers call it too)."""
        self._stop.set()
        try:
            self._core.call_soon(lambda: None)
        except RuntimeError:
            pass  # not listening or closed: run() sees the flag on its next poll

    def close(self) -> None:
        """Stop at once: drop queued requests, close every connection and the
        Manager.  Responses still being produced are cut off."""
        self._pool.shutdown(wait=False)
        self._core.close()

    # -- internals -----------------------------------------------------------

    def _worker(self, ex: _WsgiExchange) -> None:
        response = _Response(ex)
        try:
            response.run(self._app)
        except (core.ClientDisconnected, _Stalled) as exc:
            if isinstance(exc, _Stalled):
                log.warning("%s %s: client read nothing for %.1fs, response aborted",
                            ex.method, ex.environ.get("PATH_INFO"), ex.timeout)
            ex.abort()
        except Exception:
            log.exception("Error handling request %s %s", ex.method,
                          ex.environ.get("PATH_INFO"))
            if ex.dead:
                return
            if response.head_sent:
                ex.abort(flush=True)  # the client sees a truncated response
                return
            body = b"Internal Server Error"
            head = ("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\nDate: %s\r\n\r\n" % (len(body), core.http_date()))
            try:
                ex.send(core._RAW, head.encode("latin-1"))
                ex.send(core._END, body)
            except (core.ClientDisconnected, _Stalled):
                ex.abort()
        finally:
            # Not environ["wsgi.input"], which middleware may have replaced.
            if ex.spool is not None:
                ex.spool.close()


class _Core(core.HttpCore):
    """The poll-thread side of a WSGIServer."""

    log = log

    def __init__(self, server: WSGIServer, error_handler: Any, max_body_size: int) -> None:
        super().__init__(error_handler, max_body_size)
        self._server = server

    def start_exchange(self, conn: Connection, hm: HttpMessage) -> core.Exchange:
        return _WsgiExchange(self, conn, hm)

    def _submit(self, ex: _WsgiExchange) -> None:
        server = self._server
        try:
            server._pool.submit(server._worker, ex)
        except RuntimeError:  # the pool is shut down: the server is closing
            ex.mark_dead()


def serve(app: WSGIApp, url: str = "http://127.0.0.1:8000", workers: int = 4,
          stream_timeout: float = _STREAM_PUT_TIMEOUT) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM (blocking).

    Prints where it listens, then runs a ``WSGIServer`` (see its docstring).
    """
    server = WSGIServer(app, workers=workers, stream_timeout=stream_timeout)
    conn = server.listen(url)
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or "127.0.0.1"
    addr = conn.local_addr
    port = addr[1] if addr else 0
    print("cymongoose WSGI server on http://%s:%d/" % (host, port))
    print("  Workers: %d" % workers)
    print("  Press Ctrl+C to stop", flush=True)
    server.run()
