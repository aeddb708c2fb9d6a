"""WebSocket methods of ``Connection``: upgrade, send, close.

Incoming frames are checked in C (``_csrc/ws.c``) before Mongoose's
WebSocket handler sees them.  A frame that breaks RFC 6455 (reserved bits,
unknown opcode, fragmented or over-long control frame, stray continuation,
unmasked client frame, a text message or close reason that is not UTF-8,
an invalid close code) or a message too large for the receive buffer
(``MG_MAX_RECV_SIZE``, 3 MiB, counting the frame headers) ends that
connection only: frames before it are delivered, then the connection sends
a CLOSE with status 1002, 1007 or 1009, fires ``MG_EV_ERROR`` with a message
starting ``"WebSocket"``, and closes.  A PING is answered with a PONG and a
peer's CLOSE is echoed, then the connection closes; both still reach the
handler as ``MG_EV_WS_CTL`` (whose data is ``None``).

``ws_send`` refuses connections that are not WebSockets; a reassembled
fragmented message reports ``flags`` 0x81/0x82 like a single frame
(Mongoose gives the first fragment's byte, FIN clear).  See
``docs/websocket.md``.
"""

from threading import get_ident as _get_ident
from typing import Any, Mapping, Optional

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

    @carried
    def ws_upgrade(self, message: Any, extra_headers: Optional[Mapping[str, str]] = None) -> None:
        """Answer the request ``message`` with ``101 Switching Protocols``.

        Call it from the ``MG_EV_HTTP_MSG`` handler.  ``MG_EV_WS_OPEN`` (with
        the request) fires before this returns; ``MG_EV_WS_MSG`` and
        ``MG_EV_WS_CTL`` follow.  A request without ``Sec-WebSocket-Key``
        gets ``426`` from Mongoose and the connection is not upgraded.

        Args:
            message: the request's ``HttpMessage``, still valid.
            extra_headers: a mapping of header names to values added to the
                101 response (``%`` is safe, CR, LF and NUL are not).

        Raises:
            TypeError: ``message`` is not an ``HttpMessage``, or
                ``extra_headers`` is truthy and not a mapping.
            ValueError: ``message`` is ``None`` or no longer valid, or a
                header contains CR, LF or NUL.
            RuntimeError: the connection is closed
                (``ClosedError("Connection has been closed")``) or is already
                a WebSocket (``MongooseError``).
        """
        hm = valid_message(message)
        lines = _header_lines(extra_headers)
        c = self._live()
        with self._mgr._calling_c:
            rc = lib.cym_ws_upgrade(c, hm._ptr(), lines if lines is not None else ffi.NULL)
        check(rc)

    @carried
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
            # The echo/broadcast case, checked inline: a call less per frame
            # (bench/README.md).
            c = self._c
            if c is not None and not self._closing:
                poller = self._mgr._poller
                if not poller or poller == _get_ident():  # else the general path raises
                    rc = _ws_send(c, data, len(data), op)
                    if rc:
                        check(rc, _TEXTS)
                    return
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
