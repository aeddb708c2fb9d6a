"""WebSocket methods of ``Connection``: upgrade, send, close, and the
options of a WebSocket (subprotocol, compression, keep-alive, message size).

Incoming frames are checked in C (``_csrc/ws.c``) before Mongoose's
WebSocket handler sees them.  A frame that breaks RFC 6455 (reserved bits,
unknown opcode, fragmented or over-long control frame, stray continuation,
unmasked client frame, a text message or close reason that is not UTF-8,
an invalid close code), a message above the connection's size limit
(``Limits.max_ws_message_size`` on a server, ``max_size`` of
``Manager.ws_connect``; checked on the frame header, and again after
inflation, so a compression bomb is refused too), or invalid compressed
data ends that connection only: frames before it are delivered, then the
connection sends a CLOSE with status 1002, 1007 or 1009, fires
``MG_EV_ERROR`` with a message starting ``"WebSocket"``, and closes.  A
keep-alive PING left unanswered for ``ping_timeout`` seconds ends the
connection the same way with status 1011 (and a warning on the
``cymongoose`` logger).  A PING is answered with a PONG and a
peer's CLOSE is echoed, then the connection closes; both still reach the
handler as ``MG_EV_WS_CTL`` (whose data is ``None``).

``ws_send`` refuses connections that are not WebSockets; a reassembled
fragmented message reports ``flags`` 0x81/0x82 like a single frame
(Mongoose gives the first fragment's byte, FIN clear).  See
``docs/websocket.md``.
"""

import math
from threading import get_ident as _get_ident
from typing import Any, List, Mapping, Optional, Tuple

from ._carry import carried
from ._args import header_line, to_bytes, to_cstr, to_int
from ._ffi import ffi, lib
from ._host import ConnectionHost
from .constants import WEBSOCKET_OP_TEXT
from .errors import check
from .messages import valid_message

_ws_send = lib.cym_ws_send

#: Seconds a connection that sent a CLOSE (``ws_close``, an echo, a protocol
#: error) waits for the peer's answer, or for its send buffer to drain,
#: before the socket is closed regardless.
CLOSE_WAIT = int(lib.CYM_WS_CLOSE_WAIT_MS) / 1000.0

_TEXTS = {
    int(lib.CYM_E_NOT_WS): ("Connection is not a WebSocket: call ws_upgrade() first, "
                            "or wait for MG_EV_WS_OPEN on a ws_connect() connection"),
    int(lib.CYM_E_NOMEM): "out of memory queueing a WebSocket frame",
}


def _valid_close_code(code: int) -> bool:
    """Codes an endpoint may send (RFC 6455 7.4.1 and the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _header_lines(extra_headers: Any) -> Optional[bytes]:
    if not extra_headers:
        return None
    items = getattr(extra_headers, "items", None)
    if items is None:
        raise TypeError("extra_headers must be a mapping, got %s"
                        % type(extra_headers).__name__)
    return "".join(header_line(k, v) for k, v in items()).encode("utf-8")


#: Largest message a ``ws_connect`` client receives by default (3 MiB).
DEFAULT_MAX_SIZE = int(lib.CYM_WS_DEFAULT_MAX)
#: Hard bound on a message, whatever the limits say (1 GiB).
HARD_MAX_SIZE = int(lib.CYM_WS_HARD_MAX)

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _subprotocol(name: Any) -> bytes:
    """A subprotocol name: an HTTP token (RFC 6455 4.1)."""
    if not isinstance(name, str):
        raise TypeError("subprotocol must be a str, got %s" % type(name).__name__)
    if not name or not set(name) <= _TOKEN:
        raise ValueError("subprotocol must be a non-empty HTTP token, got %r" % name)
    return name.encode("ascii")


def _compression(value: Any) -> int:
    if value is None:
        return 0
    if value == "deflate":
        return 1
    raise ValueError("compression must be 'deflate' or None, got %r" % (value,))


def _ms(value: Any, name: str) -> int:
    """Seconds (``None``: off) as milliseconds for C."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds or None, got %s"
                        % (name, type(value).__name__))
    seconds = float(value)
    if not (math.isfinite(seconds) and 0 < seconds <= 1e9):
        raise ValueError("%s must be a positive, finite number of seconds, got %r"
                         % (name, value))
    return max(1, int(round(seconds * 1000)))


def _max_size(value: Any) -> int:
    if value is None:
        return HARD_MAX_SIZE
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("max_size must be an int or None, got %s" % type(value).__name__)
    if not 0 <= value <= HARD_MAX_SIZE:
        raise ValueError("max_size must be 0..%d, got %d" % (HARD_MAX_SIZE, value))
    return value or 1  # 0 would mean "the default" in C; 1 refuses all but empty ones


def client_options(headers: Any, subprotocols: Any, origin: Any, compression: Any,
                   max_size: Any, ping_interval: Any, ping_timeout: Any
                   ) -> Tuple[Any, Any, int, int, int, int]:
    """The ``cym_ws_client`` arguments for ``Manager.ws_connect`` (validated).

    Raises:
        TypeError, ValueError: as documented on ``Manager.ws_connect``.
    """
    lines = _header_lines(headers) or b""
    offered = None
    if subprotocols is not None:
        if isinstance(subprotocols, (str, bytes)):
            raise TypeError("subprotocols must be a sequence of str, not a single string")
        names = [_subprotocol(p) for p in subprotocols]
        if names:
            offered = b", ".join(names)
            lines += b"Sec-WebSocket-Protocol: " + offered + b"\r\n"
    if origin is not None:
        lines += header_line("Origin", to_cstr(origin, "origin").decode("utf-8")).encode("utf-8")
    interval = _ms(ping_interval, "ping_interval")
    timeout = _ms(ping_timeout, "ping_timeout")
    return (lines or ffi.NULL, offered if offered is not None else ffi.NULL,
            _compression(compression),
            _max_size(max_size),
            interval, timeout if interval else 0)


def offered_subprotocols(message: Any) -> Tuple[str, ...]:
    """The subprotocols an upgrade request offers, in its order.

    Reads every ``Sec-WebSocket-Protocol`` header of the ``HttpMessage``
    ``message`` (a comma-separated list each); empty when there is none.
    """
    hm = valid_message(message)
    found: List[str] = []
    for name, value in hm.headers():
        if name.lower() == "sec-websocket-protocol":
            found.extend(p.strip() for p in value.split(",") if p.strip())
    return tuple(found)


def _check(rc: int) -> None:
    if rc:
        check(rc, _TEXTS)


class WsConnectionMixin(ConnectionHost):
    """``ws_upgrade``, ``ws_send`` and ``ws_close`` for :class:`Connection`."""

    __slots__ = ()

    @property
    def ws_close_code(self) -> Optional[int]:
        """Status code of the CLOSE frame the peer sent, ``None`` before one.

        1005 means the peer's CLOSE carried no code.  Readable in the
        ``MG_EV_WS_CTL`` handler for that frame and in ``MG_EV_CLOSE``;
        ``None`` once the connection is closed.  (``MG_EV_WS_CTL`` itself
        carries ``None``.)
        """
        c = self._c
        if c is None:
            return None
        code = int(lib.cym_ws_peer_code(c))
        return code if code else None

    @property
    def ws_subprotocol(self) -> Optional[str]:
        """The subprotocol this WebSocket speaks, ``None`` for none.

        On a server, the one ``ws_upgrade`` selected; on a client, the one
        the server chose from ``ws_connect(subprotocols=...)``.  ``None``
        once the connection is closed.
        """
        c = self._c
        if c is None:
            return None
        p = lib.cym_ws_subprotocol(c)
        return None if p == ffi.NULL else ffi.string(p).decode("ascii")

    @property
    def ws_compression(self) -> Optional[str]:
        """``"deflate"`` when permessage-deflate was negotiated, else ``None``."""
        c = self._c
        if c is None or not lib.cym_ws_compressed(c):
            return None
        return "deflate"

    @carried
    def ws_upgrade(self, message: Any, extra_headers: Optional[Mapping[str, str]] = None, *,
                   subprotocol: Optional[str] = None, compression: Optional[str] = None,
                   ping_interval: Optional[float] = None,
                   ping_timeout: Optional[float] = None) -> None:
        """Answer the request ``message`` with ``101 Switching Protocols``.

        Call it from the ``MG_EV_HTTP_MSG`` handler.  ``MG_EV_WS_OPEN`` (with
        the request) fires before this returns; ``MG_EV_WS_MSG`` and
        ``MG_EV_WS_CTL`` follow.  A request without ``Sec-WebSocket-Key``
        gets ``426`` from Mongoose and the connection is not upgraded.
        Messages larger than the listener's ``Limits.max_ws_message_size``
        are refused with CLOSE 1009.

        Args:
            message: the request's ``HttpMessage``, still valid.
            extra_headers: a mapping of header names to values added to the
                101 response (``%`` is safe, CR, LF and NUL are not).
            subprotocol: the subprotocol to speak, one the request offers
                (see :func:`offered_subprotocols`); ``None`` answers none.
            compression: ``"deflate"`` accepts permessage-deflate (RFC 7692)
                when the client offers it; ``None`` (the default) never
                compresses.
            ping_interval: seconds between keep-alive PINGs; ``None`` (the
                default) sends none.
            ping_timeout: seconds a PING may stay unanswered before the
                connection is closed with 1011; ``None``: no timeout.

        Raises:
            TypeError: ``message`` is not an ``HttpMessage``,
                ``extra_headers`` is truthy and not a mapping, or an option
                has the wrong type.
            ValueError: ``message`` is ``None`` or no longer valid, a header
                contains CR, LF or NUL, ``subprotocol`` is not an HTTP token
                or not offered by a request that offers subprotocols, or an
                option is out of range.
            RuntimeError: the connection is closed
                (``ClosedError("Connection has been closed")``) or is already
                a WebSocket (``MongooseError``).
        """
        hm = valid_message(message)
        lines = _header_lines(extra_headers)
        proto = ffi.NULL
        if subprotocol is not None:
            proto = _subprotocol(subprotocol)
            offered = offered_subprotocols(hm)
            if offered and subprotocol not in offered:
                raise ValueError("subprotocol %r was not offered (offered: %s)"
                                 % (subprotocol, ", ".join(offered)))
        compress = _compression(compression)
        interval = _ms(ping_interval, "ping_interval")
        timeout = _ms(ping_timeout, "ping_timeout") if interval else 0
        c = self._live()
        with self._mgr._calling_c:
            rc = lib.cym_ws_upgrade(c, hm._ptr(), lines if lines is not None else ffi.NULL,
                                    proto, compress, interval, timeout)
        check(rc, _TEXTS)

    def ws_send(self, data: Any, op: int = WEBSOCKET_OP_TEXT) -> None:
        """Queue one WebSocket frame (FIN set; masked on client connections).

        Args:
            data: the payload; ``str`` is UTF-8 encoded, anything else goes
                through ``bytes()``.
            op: the opcode: ``WEBSOCKET_OP_TEXT`` (1), ``WEBSOCKET_OP_BINARY``
                (2), ``WEBSOCKET_OP_PING`` (9), ``WEBSOCKET_OP_PONG`` (10), or
                8 for a raw CLOSE frame (prefer :meth:`ws_close`).

        Raises:
            TypeError: ``op`` is not an integer, or ``data`` cannot become bytes.
            OverflowError: ``op`` is outside the C ``int`` range.
            ValueError: ``op`` is not 0..15, or a control frame (``op`` 8 and
                above) carries more than 125 bytes.
            RuntimeError: the connection is closed
                (``ClosedError("Connection has been closed")``), our CLOSE
                frame already went out (``ClosedError``), or the connection is
                not a WebSocket (``MongooseError``).
        """
        if type(data) is bytes and type(op) is int and 0 <= op < 8:
            # The echo/broadcast case from a handler, checked inline and not
            # through @carried: on CPython the carrier's wrapper cost more
            # than the C call itself (bench/README.md).
            c = self._c
            if c is not None and not self._closing:
                loop = self._mgr._loop_thread  # another thread polls: the general path carries
                if not loop or loop == _get_ident():
                    rc = _ws_send(c, data, len(data), op)
                    if rc:
                        check(rc, _TEXTS)
                    return
        self._ws_send_carried(data, op)

    @carried
    def _ws_send_carried(self, data: Any, op: int) -> None:
        buf = to_bytes(data)
        opcode = to_int(op, "op")
        if not 0 <= opcode <= 15:
            raise ValueError("WebSocket opcode must be 0..15, got %d" % opcode)
        if opcode >= 8 and len(buf) > 125:
            raise ValueError("WebSocket control frames carry at most 125 bytes, got %d"
                             % len(buf))
        _check(lib.cym_ws_send(self._live(), buf, len(buf), opcode))

    @carried
    def ws_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the WebSocket closing handshake with a status code.

        Sends a CLOSE frame carrying ``code`` and ``reason``; the peer sees
        them as its close code and reason.  The socket closes once the peer
        answers with its own CLOSE (which reaches the handler as
        ``MG_EV_WS_CTL``) or after ``CLOSE_WAIT`` seconds, whichever comes
        first; ``MG_EV_CLOSE`` follows as usual.  From now on ``ws_send``
        raises.  A second call does nothing.

        Args:
            code: 1000-1003, 1007-1014 or 3000-4999.
            reason: text of at most 123 bytes in UTF-8.

        Raises:
            TypeError: ``code`` is not an integer or ``reason`` not a ``str``.
            ValueError: ``code`` may not be sent, or ``reason`` is too long.
            RuntimeError: the connection is closed (``ClosedError``) or is not
                a WebSocket (``MongooseError``).
        """
        status = to_int(code, "code")
        if not _valid_close_code(status):
            raise ValueError("WebSocket close code %d may not be sent" % status)
        raw = to_cstr(reason, "reason")
        if len(raw) > 123:
            raise ValueError("WebSocket close reason is limited to 123 bytes, got %d"
                             % len(raw))
        _check(lib.cym_ws_close(self._live(), status, raw, len(raw)))
