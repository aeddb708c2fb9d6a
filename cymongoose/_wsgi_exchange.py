"""One WSGI request: its exchange, ``start_response`` and the run of the
application that produces the response.

``run_exchange(app, ex)`` runs on whichever thread serves the application
(a worker of the pool); it only talks to the poll thread through the
exchange's outbox, so it does not care which thread that is.
"""

import io
import logging
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Tuple

from ._http_exchange import END, LOW_WATER, RAW, ClientDisconnected, Exchange
from ._http_server import HttpCore
from ._http_writers import error_response, frame_response
from ._access_log import access_record
from ._wsgi_environ import build_environ
from .connection import Connection
from .messages import HttpMessage

log = logging.getLogger("cymongoose.wsgi")

#: Request bodies above this size are spooled to a temporary file.
SPOOL_SIZE = 1024 * 1024


class Stalled(Exception):
    """The client took no data for ``stream_timeout`` seconds."""


class WsgiExchange(Exchange):
    """A request for a WSGI application: the environ is built from the head,
    the body collected into ``wsgi.input``, then ``submit(self)`` hands the
    exchange to whoever runs the application."""

    __slots__ = ("environ", "spool", "cond", "timeout", "submit")

    def __init__(self, server: HttpCore, conn: Connection, hm: HttpMessage, timeout: float,
                 submit: Callable[["WsgiExchange"], None]) -> None:
        super().__init__(server, conn, hm.method, hm.proto, hm.header("Connection"))
        self.cond = threading.Condition(self.lock)
        # At MG_EV_HTTP_HDRS the body is not read yet: on_body delivers it.
        self.environ = build_environ(hm, conn, server._server_name, server._server_port, b"",
                                     server.front)
        self.access = access_record(hm, self.environ["REMOTE_ADDR"])
        self.spool: Any = None
        self.timeout = timeout
        self.submit = submit

    def on_body(self, data: bytes, more: bool) -> None:
        if more or self.spool is not None:
            if self.spool is None:
                self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
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
        self.submit(self)

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
            while self.queued >= LOW_WATER and not self.dead:
                self.waiting = True
                now = time.monotonic()
                if self.progress != before:
                    before = self.progress
                    deadline = now + timeout
                if now >= deadline:
                    raise Stalled()
                self.cond.wait(deadline - now)
        if self.dead:
            raise ClientDisconnected("client disconnected")



class WsgiResponse:
    """``start_response``, ``write`` and the framing of one response (worker thread)."""

    __slots__ = ("ex", "status", "headers", "head_sent", "op", "length", "sent")

    def __init__(self, ex: WsgiExchange) -> None:
        self.ex = ex
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.head_sent = False
        self.op = RAW
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
        head, self.op, self.length = frame_response(
            self.ex, int(status[:3]), "HTTP/1.1 " + status, self.headers, total)
        self.head_sent = True
        self.ex.send(RAW, head)

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

    def run(self, app: Callable[..., Any]) -> None:
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
            ex.send(max(self.op, 0) | END)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest



def run_exchange(app: Callable[..., Any], ex: WsgiExchange) -> None:
    """Run ``app`` for ``ex`` and send its response.

    An exception of the application is logged and answered ``500`` when no
    byte of the response was sent; otherwise the connection is closed so
    the client sees a truncated response.  A client that reads nothing for
    ``ex.timeout`` seconds gets its response aborted.
    """
    response = WsgiResponse(ex)
    try:
        response.run(app)
    except (ClientDisconnected, Stalled) as exc:
        if isinstance(exc, Stalled):
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
        try:
            ex.send(END, error_response(500))
        except (ClientDisconnected, Stalled):
            ex.abort()
    finally:
        # Not environ["wsgi.input"], which middleware may have replaced.
        if ex.spool is not None:
            ex.spool.close()
