"""One WSGI request: its exchange, ``start_response`` and the run of the
application that produces the response.

Two ways to run the application:

* ``run_exchange(app, ex)`` for the pool: on a worker thread, or on the
  poll thread between its polls (``_poll_standby``).  It talks to the poll
  thread through the exchange's outbox, or writes a whole response while
  holding the poll thread's ``Place``, and waits while the client is
  behind (flow control).
* ``run_inline(app, ex)`` on the poll thread itself, for an
  ``InlineExchange``: the response goes straight into Mongoose's send
  buffer.  A streamed body is pulled from the application only while that
  buffer has room; the rest is pulled on ``MG_EV_WRITE`` (``resume``), so
  the poll thread never waits for a client.
"""

import io
import logging
import re
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ._http_exchange import (ABORT, END, FLUSH, LOW_WATER, NO_LOCK, NOW, RAW, STREAM_BATCH_SIZE,
                             ClientDisconnected, Exchange)
from ._ffi import ffi, lib
from ._http_server import HttpCore
from ._http_writers import Framed, error_response, frame_response
from ._access_log import access_record
from ._wsgi_environ import build_environ, connection_environ
from .connection import Connection
from .messages import HttpMessage

log = logging.getLogger("cymongoose.wsgi")

#: Request bodies above this size are spooled to a temporary file.
SPOOL_SIZE = 1024 * 1024


class Stalled(Exception):
    """The client took no data for ``stream_timeout`` seconds."""


class Place:
    """The poll thread's place, which a pool worker takes while that thread
    waits in epoll_wait, or has left it to run applications
    (``_poll_standby``), to write a whole response itself (``_csrc/park.c``;
    ``WsgiExchange._take_place``).

    ``running`` and ``queue`` are the pool's: the idents of its threads
    running an application, and its queue of requests not started.  They
    are read as attributes (``WsgiExchange._take_place``, and the server's
    ``_submit`` to see the pool idle), not asked for through a method, as
    both run once per request."""

    __slots__ = ("park", "running", "queue")

    def __init__(self, park: Any, running: Set[int], queue: Any) -> None:
        self.park = park
        self.running = running
        self.queue = queue


class WsgiExchange(Exchange):
    """A request for a WSGI application: the environ is built from the head,
    the body collected into ``wsgi.input``, then ``submit(self)`` hands the
    exchange to whoever runs the application."""

    __slots__ = ("environ", "spool", "cond", "timeout", "submit", "place", "held", "response",
                 "last_progress")

    def __init__(self, server: HttpCore, conn: Connection, hm: HttpMessage, timeout: float,
                 submit: Callable[["WsgiExchange"], None], multithread: bool = True,
                 place: Optional[Place] = None) -> None:
        # At MG_EV_HTTP_HDRS the body is not read yet: on_body delivers it.
        # The head is read once, into the environ.
        peer = conn.userdata
        base = peer.environ_base
        if base is None:
            base = peer.environ_base = connection_environ(
                peer, server._server_name, server._server_port, multithread)
        environ = self.environ = build_environ(hm, peer, server._server_name,
                                               server._server_port, None, multithread,
                                               server.front, base)
        super().__init__(server, conn, environ["REQUEST_METHOD"], environ["SERVER_PROTOCOL"],
                         environ.get("HTTP_CONNECTION"), None if multithread else NO_LOCK)
        self.access = access_record(hm, environ["REMOTE_ADDR"])
        # Made by the first producer that has to wait: most never do.
        self.cond: Optional[threading.Condition] = None
        self.spool: Any = None
        self.timeout = timeout
        self.submit = submit
        #: The poll thread's place, for a pool's worker; else None.
        self.place = place
        #: Run by the poll thread in a batch of several (``_poll_standby``):
        #: a whole response waits for the poll after the batch, which writes
        #: them all in one burst, as inline, rather than each waking the
        #: client.  Never set on a worker's: no poll would follow it.
        self.held = False
        #: An ``InlineExchange``'s response while its body is pulled on
        #: MG_EV_WRITE, and when that last made progress.  (Set here, saving
        #: the subclass an ``__init__`` of its own: one call less per request.)
        self.response: Optional["WsgiResponse"] = None
        self.last_progress = 0.0

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
        cond = self.cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def send_whole(self, framed: Framed) -> None:
        """Send a whole response (head and body) and end it: written by
        this worker while the poll thread waits (``_take_place``), else
        queued for the poll thread."""
        conn = self._take_place()
        if conn is not None:
            try:
                self.server.write_whole(self, conn, framed.buf, framed.size)
            finally:
                self._give_place(conn)
            return
        self.send(END, framed.data())

    def respond_whole(self, code: int, line: bytes, flat: bytes, npairs: int,
                      body: bytes, total: int) -> bool:
        """Frame and send a whole response in one step where the producer
        may write into Mongoose's send buffer itself (``InlineExchange``, or
        a worker while the poll thread waits); ``total`` as in
        ``frame_whole_into``.  False: ``send_whole`` it instead."""
        if self.access is not None:
            return False  # frame_whole would refuse: the access log wants the bytes
        conn = self._take_place()
        if conn is None:
            return False
        try:
            return self.server.frame_whole(self, conn, code, line, flat, npairs, body, total)
        finally:
            self._give_place(conn)

    def _take_place(self) -> Optional[Connection]:
        """Take the poll thread's place while it waits in epoll_wait (or has
        left it) and return the connection to write the whole response into;
        ``_give_place`` then hands it back.  None, holding nothing, when the
        poll thread is busy, or the response cannot skip the outbox
        (something is queued there, or the exchange is over).

        Only with no other thread running an application or one queued
        (the poll thread queues none meanwhile, so that holds until the
        place is given back): the holder needs the GIL back after each of
        its C calls, and a worker in the middle of an application could
        keep it meanwhile, for up to a switch interval (5 ms), while the
        poll thread waits for the place.  Flask on 8 threads went from 70 to
        92 us per request that way."""
        place = self.place
        if place is None:
            return None
        running, queue = place.running, place.queue
        if len(running) > 1 or not queue.empty() or not lib.cym_park_take(place.park):
            return None
        conn = self.conn
        if (len(running) > 1 or not queue.empty() or self.scheduled or self.dead or self.ended
                or conn._c is None or conn._closing):
            lib.cym_park_give(place.park)
            return None
        return conn

    def _give_place(self, conn: Connection) -> None:
        """Write what was queued to the socket (unless ``held``), give the
        poll thread its place back, and wake it when the rest needs a poll
        (bytes left over, a connection to drain)."""
        c = conn._c
        if self.held or c is None:
            c = ffi.NULL
        if lib.cym_park_give_sending(self.place.park, c):  # type: ignore[union-attr]
            mgr = self.server.manager
            try:
                mgr.wakeup(mgr.wakeup_id, b"")
            except RuntimeError:
                pass  # closed meanwhile: nothing is left to send

    def send(self, op: int, data: bytes = b"") -> None:
        """Queue response bytes; waits while the client is behind (worker thread)."""
        if not self.push(op, data):
            return
        timeout = self.timeout
        with self.lock:
            if self.cond is None:
                self.cond = threading.Condition(self.lock)
        cond = self.cond
        with cond:
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
                cond.wait(deadline - now)
        if self.dead:
            raise ClientDisconnected("client disconnected")


class InlineExchange(WsgiExchange):
    """An exchange whose application runs on the poll thread: ``send``
    writes into Mongoose's send buffer at once, without the outbox.  Made
    with ``multithread`` False."""

    __slots__ = ()

    def send(self, op: int, data: bytes = b"") -> None:
        if self.dead or self.ended:
            raise ClientDisconnected("client disconnected")
        self.server._apply(self, self.conn, op, data)

    def send_whole(self, framed: Framed) -> None:
        if self.dead or self.ended:
            raise ClientDisconnected("client disconnected")
        self.server.write_whole(self, self.conn, framed.buf, framed.size)

    def respond_whole(self, code: int, line: bytes, flat: bytes, npairs: int,
                      body: bytes, total: int) -> bool:
        if self.dead or self.ended:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        if conn._c is None or conn._closing:
            return False
        return self.server.frame_whole(self, conn, code, line, flat, npairs, body, total)

    def abort(self, flush: bool = False) -> None:
        if not (self.dead or self.ended):
            self.server._apply(self, self.conn, ABORT, FLUSH if flush else NOW)

    def has_room(self) -> bool:
        """Mongoose's send buffer can take more of the body now."""
        c = self.conn._c
        return c is not None and c.send.len < STREAM_BATCH_SIZE

    def on_disconnect(self) -> None:
        super().on_disconnect()
        response = self.response
        if response is not None:
            self.response = None
            response.close()
            if self.spool is not None:
                self.spool.close()

    def resume(self) -> bool:
        """MG_EV_WRITE: pull more of the body; True once the response is over."""
        response = self.response
        if response is None:
            return True
        self.last_progress = time.monotonic()
        if not _pump(self, response):
            return False
        self.response = None
        return True


class WsgiResponse:
    """``start_response``, ``write`` and the framing of one response."""

    __slots__ = ("ex", "status", "line", "headers", "flat", "head_sent", "op", "length",
                 "sent", "result", "pieces", "total")

    def __init__(self, ex: WsgiExchange) -> None:
        self.ex = ex
        self.status: Optional[str] = None
        #: The status code and status line of ``status`` (``_status_line``).
        self.line: Tuple[int, bytes] = _NO_LINE
        self.headers: List[Tuple[str, str]] = []
        self.flat: Optional[str] = None  # the headers NUL-joined
        self.head_sent = False
        self.op = RAW
        self.length: Optional[int] = None  # Content-Length the body must match
        self.sent = 0
        self.result: Any = None
        self.pieces: Optional[Iterator[Any]] = None  # what is left of the body
        self.total: Optional[int] = None

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
        line = _STATUS_LINES.get(status) if type(status) is str else None
        if line is None:
            line = _status_line(status)
        if type(headers) is not list:
            headers = list(headers)
        npairs = len(headers)
        # The names and values NUL-joined, as frame_response takes them: one
        # scan of that run for CR and LF, and a NUL of their own (or a
        # header that is not a pair) shows in the count; only a hit looks at
        # each header again.
        try:
            flat = "\0".join(map("\0".join, headers))
        except TypeError:
            flat = None
        if flat is None or "\r" in flat or "\n" in flat \
                or (flat.count("\0") != 2 * npairs - 1 and npairs):
            _check_headers(headers)
        self.status = status
        self.line = line
        self.headers = headers
        self.flat = flat
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable of ``start_response``: send ``data`` now."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if data:
            self._send(data, None)

    def _head(self) -> Tuple[int, bytes, bytes]:
        """Status code, status line and NUL-joined headers, as the framers take them."""
        assert self.flat is not None
        return self.line[0], self.line[1], self.flat.encode("latin-1")

    def _frame(self, total: Optional[int], body: Optional[bytes] = None,
               head: Optional[Tuple[int, bytes, bytes]] = None) -> Framed:
        """The head (``frame_response``); ``total`` is the body length when
        already known, ``body`` the whole body when there is one piece;
        ``head`` what ``_head()`` returned, if the caller has it."""
        code, line, flat = head or self._head()
        framed = frame_response(self.ex, code, line, flat, len(self.headers), total, body)
        self.op, self.length = framed.op, framed.length
        self.head_sent = True
        return framed

    def _send(self, data: bytes, total: Optional[int]) -> None:
        if not self.head_sent:
            self.ex.send(RAW, self._frame(total).data())
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

    def start(self, app: Callable[..., Any]) -> bool:
        """Call the application; True when the whole response is sent.

        A one-piece body (a list or tuple of one item, the common case) goes
        out with its head as one write; otherwise ``pump`` sends the body.
        """
        result = self.result = app(self.ex.environ, self.start_response)
        if self.status is not None and type(result) in (list, tuple) and len(result) == 1:
            data = result[0]
            if isinstance(data, str):
                data = data.encode("latin-1")
            if not self.head_sent:
                return self._whole(data)
        it = iter(result)
        if self.status is None:
            # PEP 3333 lets an application call start_response as late as
            # its first piece of output.
            first = next(it, None)
            if self.status is None:
                raise AssertionError("the application did not call start_response")
            if first is not None:
                it = _chain(first, it)
        self.pieces = it
        if isinstance(result, (list, tuple)) and len(result) == 1:
            self.total = len(result[0])
        return False

    def _whole(self, data: bytes) -> bool:
        flat, line = self.flat, self.line
        assert flat is not None
        # _head(), inline: this runs for nearly every response.
        head = (line[0], line[1], flat.encode("latin-1"))
        if self.ex.respond_whole(head[0], head[1], head[2], len(self.headers), data, len(data)):
            self.head_sent = True
            self.sent = len(data)
            return True
        framed = self._frame(len(data), data, head)
        if not framed.whole:
            self.pieces = iter((data,))  # a mismatched Content-Length: the general path
            self.ex.send(RAW, framed.data())
            return False
        self.sent = len(data) if framed.op >= 0 else 0
        self.ex.send_whole(framed)
        return True

    def pump(self, room: Optional[Callable[[], bool]] = None) -> bool:
        """Send body pieces until the body ends (True) or ``room()`` says
        the client is behind (False: call again later)."""
        pieces = self.pieces
        assert pieces is not None
        total = self.total
        # next() rather than a for loop: pieces is an iterator already, and
        # the loop's iter() would call into Python again for a class-based
        # one (Werkzeug's ClosingIterator, which Flask returns).
        while True:
            data = next(pieces, _DONE)
            if data is _DONE:
                break
            if data:
                if isinstance(data, str):
                    data = data.encode("latin-1")
                if not self.head_sent and total is None:
                    # A first piece as long as the declared Content-Length
                    # (a framework's usual response) is the whole response:
                    # one write, and nothing more is pulled.
                    head = self._head()
                    if self.ex.respond_whole(head[0], head[1], head[2], len(self.headers),
                                             data, -1):
                        self.head_sent = True
                        return True
                    framed = self._frame(None, data, head)
                    if framed.whole:
                        self.sent = len(data) if framed.op >= 0 else 0
                        self.ex.send_whole(framed)
                        return True
                    self.ex.send(RAW, framed.data())
                self._send(data, total)
                if room is not None and not room():
                    return False
        ex = self.ex
        if not self.head_sent:
            ex.send(RAW, self._frame(0 if total is None else total).data())
        if self.length is not None and self.sent < self.length:
            ex.abort(flush=True)  # short body: only closing can end it
            return True
        ex.send(max(self.op, 0) | END)
        return True

    def close(self) -> None:
        """Call the result's ``close()`` (PEP 3333), once."""
        result, self.result = self.result, None
        close = getattr(result, "close", None)
        if close is not None:
            close()


#: The status codes a WSGI application may give (final ones, 200-599), as
#: the first three characters of its status.
_FINAL_CODES = frozenset(str(code) for code in range(200, 600))
#: Status code and status line of each status seen (``_status_line``): an
#: application gives a few statuses, over and over.
_STATUS_LINES: Dict[str, Tuple[int, bytes]] = {}
#: How many statuses ``_STATUS_LINES`` keeps (reason phrases are free text).
_STATUS_LINES_MAX = 256
_NO_LINE = (0, b"")
#: What a reason phrase may not hold: controls but tab, DEL, and beyond latin-1.
_NOT_IN_REASON = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]")


def _status_line(status: Any) -> Tuple[int, bytes]:
    """The code and status line of a WSGI ``status`` (``"404 Not Found"``),
    remembered in ``_STATUS_LINES``.  ``ValueError`` for one that is not a
    final status (200-599: a 1xx would leave the client waiting for the
    real answer, RFC 9110 section 15, and above 599 is invalid), or whose
    reason phrase is not latin-1 or holds a control character other than
    tab (RFC 9112 section 4): a CR or LF there would start a header line of
    its own."""
    if not isinstance(status, str) or len(status) < 4 or status[3] != " " \
            or status[:3] not in _FINAL_CODES:
        raise ValueError("invalid WSGI status %r (want '200 OK' to '599 ...')" % (status,))
    if _NOT_IN_REASON.search(status) is not None:
        raise ValueError("WSGI status %r holds a control character or is not latin-1"
                         % (status,))
    line = ("HTTP/1.1 " + status).encode("latin-1")
    head = (int(status[:3]), line)
    if type(status) is str and len(_STATUS_LINES) < _STATUS_LINES_MAX:
        _STATUS_LINES[status] = head
    return head

#: What ``next`` gives ``WsgiResponse.pump`` at the end of the body.
_DONE: Any = object()


def _check_headers(headers: List[Tuple[str, str]]) -> None:
    """Raise for the first header that is not a pair of str without CR, LF or NUL."""
    for header in headers:
        try:
            name, value = header
        except (TypeError, ValueError):
            raise TypeError("a WSGI header must be a (name, value) pair: %r" % (header,)) \
                from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("WSGI header names and values must be str")
        for part in (name, value):
            if "\r" in part or "\n" in part or "\0" in part:
                raise ValueError("header contains CR, LF or NUL: %r" % (part,))


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _failed(ex: WsgiExchange, response: WsgiResponse, exc: BaseException) -> None:
    """Answer what the application or the client did wrong.

    An exception of the application is logged and answered ``500`` when no
    byte of the response was sent; otherwise the connection is closed so
    the client sees a truncated response.  A client that reads nothing for
    ``ex.timeout`` seconds gets its response aborted.
    """
    if isinstance(exc, (ClientDisconnected, Stalled)):
        if isinstance(exc, Stalled):
            log.warning("%s %s: client read nothing for %.1fs, response aborted",
                        ex.method, ex.environ.get("PATH_INFO"), ex.timeout)
        ex.abort()
        return
    log.error("Error handling request %s %s", ex.method, ex.environ.get("PATH_INFO"),
              exc_info=exc)
    if ex.dead:
        return
    if response.head_sent:
        ex.abort(flush=True)  # the client sees a truncated response
        return
    try:
        ex.send(END, error_response(500))
    except (ClientDisconnected, Stalled):
        ex.abort()


def run_exchange(app: Callable[..., Any], ex: WsgiExchange) -> None:
    """Run ``app`` for ``ex`` and send its response (a pool's thread: a worker,
    or the poll thread between polls, ``_poll_standby``)."""
    response = WsgiResponse(ex)
    try:
        try:
            if not response.start(app):
                response.pump()
        finally:
            response.close()
    except Exception as exc:
        _failed(ex, response, exc)
    finally:
        # Not environ["wsgi.input"], which middleware may have replaced.
        if ex.spool is not None:
            ex.spool.close()


def run_inline(app: Callable[..., Any], ex: InlineExchange) -> bool:
    """Run ``app`` for ``ex`` on the poll thread; False when the body is
    still being produced (``ex.resume`` continues it on ``MG_EV_WRITE``)."""
    response = WsgiResponse(ex)
    try:
        done = response.start(app)
    except Exception as exc:
        _settle(ex, response, exc)
        return True
    if done:
        _settle(ex, response, None)
        return True
    if _pump(ex, response):
        return True
    ex.response = response
    ex.last_progress = time.monotonic()
    return False


def _pump(ex: InlineExchange, response: WsgiResponse) -> bool:
    try:
        if not response.pump(ex.has_room):
            return False
    except Exception as exc:
        _settle(ex, response, exc)
        return True
    _settle(ex, response, None)
    return True


def _settle(ex: InlineExchange, response: WsgiResponse, exc: Optional[BaseException]) -> None:
    """The inline response is over: close the result, report ``exc``, free the body."""
    try:
        response.close()
    except Exception as close_exc:
        exc = exc or close_exc
    if exc is not None:
        _failed(ex, response, exc)
    if ex.spool is not None:
        ex.spool.close()
