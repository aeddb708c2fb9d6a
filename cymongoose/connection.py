"""``Connection``: one Python object per Mongoose connection."""

import json
from threading import get_ident as _get_ident
from typing import Any, Callable, List, Mapping, Optional, Tuple

from ._args import header_line, to_bytes, to_cstr, to_int
from ._ffi import ffi, lib
from ._carry import carried
from .errors import ClosedError, MongooseError
from .messages import HttpMessage, valid_message
from .net import NetConnectionMixin
from ._static import CacheControl, serve
from .mqtt import MqttConnectionMixin
from .tls import TlsConnectionMixin
from .ws import WsConnectionMixin

Handler = Callable[["Connection", int, Any], Any]
Address = Tuple[str, int, bool]

_F_LISTENING = int(lib.CYM_F_LISTENING)
_F_CLIENT = int(lib.CYM_F_CLIENT)
_F_TLS = int(lib.CYM_F_TLS)
_F_UDP = int(lib.CYM_F_UDP)
_F_WEBSOCKET = int(lib.CYM_F_WEBSOCKET)
_F_READABLE = int(lib.CYM_F_READABLE)
_F_WRITABLE = int(lib.CYM_F_WRITABLE)
_F_CLOSING = int(lib.CYM_F_CLOSING)
_F_FULL = int(lib.CYM_F_FULL)
_F_DRAINING = int(lib.CYM_F_DRAINING)

_TEXT_PLAIN = b"Content-Type: text/plain\r\n"
_INT_LIMIT = 1 << 31
_CLOSED = "Connection has been closed"


def _address(a: Any) -> Address:
    port = ((a.port & 0xFF) << 8) | (a.port >> 8)  # network to host order
    if a.is_ip6:
        raw = ffi.unpack(a.addr.ip, 16)
        ip = ":".join("%02x%02x" % (raw[i], raw[i + 1]) for i in range(0, 16, 2))
        return (ip, port, True)
    raw = ffi.unpack(a.addr.ip, 4)
    return ("%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3]), port, False)


def header_block(headers: Optional[Mapping[Any, Any]]) -> bytes:
    """The header lines of ``reply``: ``Content-Type: text/plain`` unless given."""
    if headers is None:
        return _TEXT_PLAIN
    lines = "".join(header_line(k, v) for k, v in headers.items())
    if not any(k.lower() == "content-type" for k in headers):
        lines = "Content-Type: text/plain\r\n" + lines
    return lines.encode("utf-8")


class Connection(NetConnectionMixin, MqttConnectionMixin, TlsConnectionMixin, WsConnectionMixin):
    """A Mongoose connection: listener, accepted peer or outbound client.

    Created by the :class:`Manager`; ``Connection()`` gives an inert, closed
    object.  Once Mongoose closes the connection (or the Manager closes),
    properties read safe defaults and sending methods raise
    ``RuntimeError("Connection has been closed")``.
    """

    __slots__ = ("_c", "_mgr", "_id", "_handler", "_closing", "userdata", "__weakref__")

    def __init__(self) -> None:
        self._c: Any = None
        self._mgr: Any = None
        self._id = 0
        self._handler: Optional[Handler] = None
        self._closing = False
        #: Any Python object; kept across events and after close.
        self.userdata: Any = None

    @classmethod
    def _new(cls, mgr: Any, c: Any, cid: int, handler: Optional[Handler]) -> "Connection":
        conn = cls.__new__(cls)
        conn._c = c
        conn._mgr = mgr
        conn._id = cid
        conn._handler = handler
        conn._closing = False
        conn.userdata = None
        return conn

    def _detach(self) -> None:
        self._c = None

    def _live(self) -> Any:
        """The C pointer, or ``RuntimeError`` once closed or closing.

        Methods that use it run on the poll thread: ``_carry`` takes them
        there when another thread calls.
        """
        c = self._c
        if c is None or self._closing:
            raise ClosedError(_CLOSED)
        return c

    def _flag(self, bit: int) -> bool:
        c = self._c
        return c is not None and bool(lib.cym_flags(c) & bit)

    # -- identity and state --------------------------------------------------

    @property
    def id(self) -> int:
        """Mongoose connection id (from 1, per Manager); 0 once closed."""
        return self._id if self._c is not None else 0

    @property
    def is_listening(self) -> bool:
        """A listening socket."""
        return self._flag(_F_LISTENING)

    @property
    def is_client(self) -> bool:
        """Created by a connect call."""
        return self._flag(_F_CLIENT)

    @property
    def is_tls(self) -> bool:
        """TLS connection (see ``tls_init`` for when it stays set)."""
        return self._flag(_F_TLS)

    @property
    def is_udp(self) -> bool:
        """A UDP connection."""
        return self._flag(_F_UDP)

    @property
    def is_websocket(self) -> bool:
        """Upgraded to WebSocket, on either side."""
        return self._flag(_F_WEBSOCKET)

    @property
    def is_readable(self) -> bool:
        """Socket was readable at the last I/O wait."""
        return self._flag(_F_READABLE)

    @property
    def is_writable(self) -> bool:
        """Socket was writable at the last I/O wait."""
        return self._flag(_F_WRITABLE)

    @property
    def is_closing(self) -> bool:
        """Scheduled to close; True once closed."""
        return self._c is None or self._closing or self._flag(_F_CLOSING)

    @property
    def is_full(self) -> bool:
        """Receive-side back-pressure flag: Mongoose stops reading while set."""
        return self._flag(_F_FULL)

    @property
    def is_draining(self) -> bool:
        """Flushing its send buffer, then closing."""
        return self._flag(_F_DRAINING)

    @property
    def recv_len(self) -> int:
        """Bytes in the receive buffer."""
        c = self._c
        return int(c.recv.len) if c is not None else 0

    @property
    def send_len(self) -> int:
        """Bytes in the send buffer, not yet written to the socket."""
        c = self._c
        return int(c.send.len) if c is not None else 0

    @property
    def recv_size(self) -> int:
        """Allocated size of the receive buffer.

        0 once the connection had no I/O for a second or two: an idle
        connection gives its empty buffers back, and the next read or send
        allocates again.
        """
        c = self._c
        return int(c.recv.size) if c is not None else 0

    @property
    def send_size(self) -> int:
        """Allocated size of the send buffer (0 when idle, as ``recv_size``)."""
        c = self._c
        return int(c.send.size) if c is not None else 0

    @property
    def local_addr(self) -> Optional[Address]:
        """``(ip, port, is_ipv6)`` of our end; ``None`` once closed."""
        c = self._c
        return _address(c.loc) if c is not None else None

    @property
    def remote_addr(self) -> Optional[Address]:
        """``(ip, port, is_ipv6)`` of the peer; ``None`` once closed."""
        c = self._c
        return _address(c.rem) if c is not None else None

    def recv_data(self, length: int = -1) -> bytes:
        """A copy of the first ``length`` bytes received (all if negative); nothing is consumed."""
        return self._buffer("recv", length)

    def send_data(self, length: int = -1) -> bytes:
        """A copy of the first ``length`` bytes queued to send (all if negative)."""
        return self._buffer("send", length)

    def _buffer(self, which: str, length: int) -> bytes:
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError("Argument 'length' must be an int")
        c = self._c
        if c is None:
            return b""
        self._mgr._check_thread()
        io = getattr(c, which)
        n = int(io.len)
        if 0 <= length < n:
            n = length
        return ffi.buffer(io.buf, n)[:] if n else b""

    # -- handler and userdata ------------------------------------------------

    @property
    def handler(self) -> Optional[Handler]:
        """This connection's own handler, or ``None`` (the Manager's default applies)."""
        return self._handler

    @carried
    def set_handler(self, handler: Optional[Handler]) -> None:
        """Set this connection's handler, effective from the next event.

        On a listener the handler is also inherited by connections accepted
        from now on; ``None`` makes future children use the default handler.
        """
        self._handler = handler
        if self._c is not None and self._mgr is not None:
            self._mgr._retarget(self)

    # -- sending -------------------------------------------------------------

    def send(self, data: Any) -> None:
        """Queue raw bytes (``str`` is UTF-8 encoded); on UDP, send one datagram.

        Raises ``RuntimeError("mg_send failed")`` when Mongoose refuses (an
        empty UDP datagram, a UDP connection still resolving, out of memory).
        """
        if type(data) is bytes:
            # From the poll thread, checked inline: not through the carrier's
            # wrapper, which costs CPython more than the C call.
            c = self._c
            if c is not None and not self._closing:
                loop = self._mgr._loop_thread
                if not loop or loop == _get_ident():
                    if not lib.mg_send(c, data, len(data)):
                        raise MongooseError("mg_send failed")
                    return
        self._send(data)

    @carried
    def _send(self, data: Any) -> None:
        buf = to_bytes(data)
        if not lib.mg_send(self._live(), buf, len(buf)):
            raise MongooseError("mg_send failed")

    def reply(self, status_code: int, body: Any = b"", headers: Optional[Mapping[str, str]] = None) -> None:
        """Send a whole HTTP response: status line, headers, Content-Length, body.

        ``headers`` is a mapping; ``Content-Type: text/plain`` is added unless
        a key matches ``content-type`` case-insensitively.  CR, LF or NUL in a
        header raises ``ValueError``.  The body is sent byte for byte (NUL
        bytes included), and ``Content-Length`` is written without padding.
        """
        if headers is None and type(body) is bytes and type(status_code) is int:
            # The common call, checked inline (~0.2 us less on CPython);
            # anything else takes the general path, which raises the errors.
            c = self._c
            if c is not None and not self._closing and -_INT_LIMIT <= status_code < _INT_LIMIT:
                loop = self._mgr._loop_thread  # another thread polls: the general path carries
                if not loop or loop == _get_ident():
                    lib.cym_reply_text(c, status_code, body, len(body))
                    return
        self._reply(status_code, body, headers)

    @carried
    def _reply(self, status_code: int, body: Any, headers: Optional[Mapping[str, str]]) -> None:
        status = to_int(status_code, "status_code")
        block = header_block(headers)
        buf = to_bytes(body)
        lib.cym_reply(self._live(), status, block, len(block), buf, len(buf))

    @carried
    def reply_json(self, data: Any, status_code: int = 200, headers: Optional[Mapping[str, str]] = None) -> None:
        """Reply with ``json.dumps(data)`` and ``Content-Type: application/json``.

        Only the exact key ``"Content-Type"`` is replaced.
        """
        body = json.dumps(data)
        merged = {"Content-Type": "application/json"} if headers is None else dict(headers)
        merged["Content-Type"] = "application/json"
        self.reply(status_code, body, merged)

    @carried
    def http_chunk(self, data: Any) -> None:
        """Write one chunk of a chunked response; empty data ends the response."""
        buf = to_bytes(data)
        lib.mg_http_write_chunk(self._live(), buf, len(buf))

    @carried
    def http_sse(self, event_type: str, data: str) -> None:
        """Write one Server-Sent Event (``event:`` and ``data:`` lines) as a chunk."""
        et = to_cstr(event_type, "event_type")
        payload = b"event: " + et + b"\ndata: " + to_cstr(data, "data") + b"\n\n"
        lib.mg_http_write_chunk(self._live(), payload, len(payload))

    @carried
    def http_basic_auth(self, username: str, password: str) -> None:
        """Append an ``Authorization: Basic`` header line to the send buffer."""
        u = to_cstr(username, "username")
        p = to_cstr(password, "password")
        lib.mg_http_bauth(self._live(), u, p)

    @carried
    def serve_dir(self, message: HttpMessage, root_dir: str, extra_headers: str = "",
                  mime_types: str = "", page404: str = "", *,
                  cache_control: CacheControl = None, follow_symlinks: bool = True,
                  dotfiles: bool = True) -> None:
        """Serve the request's URI from ``root_dir``; see docs/static-files.md.

        Index files, directory listing, ``Range`` (one range; several get
        the whole file), ``ETag``/``Last-Modified`` with ``If-*`` conditions,
        a ``.gz`` twin with ``Vary: Accept-Encoding``, 404.
        ``extra_headers`` are complete ``"Name: value\\r\\n"`` lines and
        ``mime_types`` reads ``"ext=type,ext2=type2"``.  ``cache_control`` is
        one ``Cache-Control`` value, or a mapping of ``fnmatch`` patterns on
        the request URI to values (first match wins).  A decoded control
        character (``%00`` too) gets 400, ``..`` out of the root 400.
        ``follow_symlinks=False`` answers 404 for a file whose real path
        leaves the root; ``dotfiles=False`` answers 404 for any path segment
        starting with ``.``.
        """
        hm = valid_message(message)
        serve(self._live(), hm._ptr(), message.uri, None,
              {"root_dir": root_dir, "extra_headers": extra_headers,
               "mime_types": mime_types, "page404": page404},
              cache_control, follow_symlinks, dotfiles)

    @carried
    def serve_file(self, message: HttpMessage, path: str, extra_headers: str = "",
                   mime_types: str = "", *, cache_control: CacheControl = None) -> None:
        """Serve one file, whatever the request's URI, as ``serve_dir`` serves files."""
        hm = valid_message(message)
        serve(self._live(), hm._ptr(), message.uri, to_cstr(path, "path"),
              {"extra_headers": extra_headers, "mime_types": mime_types},
              cache_control, True, True)

    # -- closing -------------------------------------------------------------

    @carried
    def close(self) -> None:
        """Close the connection; a no-op once closed.

        Outside the event loop the socket closes at once and ``MG_EV_CLOSE``
        fires before this returns.  Inside a handler or timer callback (and
        inside ``listen``/``connect``) the close is deferred: the connection
        is marked closing now, and Mongoose closes it, firing
        ``MG_EV_CLOSE``, when its loop next reaches it (later in the same
        poll, or in the next one, which then waits at most 1 ms).  Closing at
        once there would free memory that Mongoose's loop still uses.  Either way ``is_closing`` is
        True and every sending method raises ``RuntimeError("Connection has
        been closed")`` from the moment ``close()`` returns, and the socket
        is released.
        """
        c = self._c
        if c is None or self._closing:
            return
        self._closing = True
        mgr = self._mgr
        if mgr._inside:
            lib.cym_set_flag(c, _F_CLOSING, 1)
        else:
            with mgr._calling_c:
                lib.cym_close_now(c)

    @carried
    def drain(self) -> None:
        """Flush the send buffer, then close; a no-op once closed."""
        c = self._c
        if c is not None:
            lib.cym_set_flag(c, _F_DRAINING, 1)

    @carried
    def error(self, message: str) -> None:
        """Fire ``MG_EV_ERROR`` with ``message`` now and close on the next poll."""
        msg = to_cstr(message, "message")
        c = self._live()
        with self._mgr._calling_c:
            lib.cym_error(c, msg)

    def __repr__(self) -> str:
        if self._c is None:
            return "<Connection closed>"
        return "<Connection id=%d readable=%s writable=%s>" % (
            self._id, self.is_readable, self.is_writable)

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle 'Connection' object")
