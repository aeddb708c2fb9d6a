"""Per-listener limits: ``Limits`` and how a listener gets them.

Beside Mongoose's compile-time receive buffer (``MG_MAX_RECV_SIZE``,
3 MiB), these bound what one peer may cost.  ``Manager.listen(url,
limits=Limits(...))`` sets them for one listener; its accepted connections
inherit them, and a listener without ``limits=`` gets ``Limits()``, the
defaults below.  The checks run in C (``_csrc/limits.c``) and end only the
offending connection, with the status code an HTTP client expects:

=======================  ===========  =========================================
field                    default      when exceeded
=======================  ===========  =========================================
``max_body_size``        ``None``     413, ``Connection: close``
``max_header_size``      32 KiB       431
``header_timeout``       30 s         408 (silent close when nothing arrived)
``idle_timeout``         5 s          a keep-alive connection is closed
``max_connections``      ``None``     HTTP: 503 with ``Retry-After``; others:
                                      the connection is closed at once
``max_ws_message_size``  ``None``     WebSocket CLOSE 1009
=======================  ===========  =========================================

``None`` means no limit of ours.  A request body the application receives
whole (``MG_EV_HTTP_MSG``) must still fit Mongoose's 3 MiB receive buffer,
and so must a WebSocket message: above that the client gets 413 or 1009
instead of a dropped connection.  The WSGI and ASGI servers stream bodies
and keep their own ``max_body_size`` (413 as well).  See
``docs/hardening.md`` for the reasoning behind each default.
"""

import logging
import math
from typing import Any, Optional, Tuple

from . import _dispatch
from ._ffi import ffi, lib
from ._ratelog import PeerLogLimiter, peer_of_line
from .errors import check as check_code

_ATTACH_TEXTS = {int(lib.CYM_E_NO_SLOT): "Too many listeners with limits alive (at most 254)"}

logger = logging.getLogger("cymongoose")

_NONE = int(lib.CYM_LIM_NONE)
_INT64_MAX = (1 << 63) - 1
_MS_MAX = 1 << 40  # about 35 years: far beyond any sensible timeout

_FIELDS = ("max_body_size", "max_header_size", "header_timeout", "idle_timeout",
           "max_connections", "max_ws_message_size")


def _size(value: Any, name: str, low: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int or None, got %s" % (name, type(value).__name__))
    if not low <= value <= _INT64_MAX:
        raise ValueError("%s must be at least %d, got %d" % (name, low, value))
    return value


def _seconds(value: Any, name: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds or None, got %s"
                        % (name, type(value).__name__))
    seconds = float(value)
    if not (math.isfinite(seconds) and 0 < seconds * 1000 < _MS_MAX):
        raise ValueError("%s must be a positive, finite number of seconds, got %r"
                         % (name, value))
    return seconds


class Limits:
    """Limits for one listener and the connections it accepts (immutable).

    Every argument is keyword-only; ``None`` turns that limit off.

    Args:
        max_body_size: largest request body in bytes (``Content-Length``,
            or the bytes of a chunked body with their framing); above it the
            client gets ``413 Payload Too Large`` as soon as the head
            arrives.  Default ``None``: no limit of ours, but a body the
            application receives whole must fit Mongoose's 3 MiB receive
            buffer (413 beyond it).
        max_header_size: largest request head in bytes (request line and
            header lines, blank line included); above it ``431 Request
            Header Fields Too Large``.  Default 32768 (32 KiB).
        header_timeout: seconds a client has, from the connection's start or
            from the first byte of a later request, to send the whole head;
            then ``408 Request Timeout`` (or a silent close when it sent
            nothing).  Defeats slow-header attacks.  Default 30.
        idle_timeout: seconds a keep-alive connection may wait for its next
            request after a response; then it is closed.  Default 5.
        max_connections: simultaneous accepted connections; past it an HTTP
            client gets ``503 Service Unavailable`` (``Retry-After: 1``) and
            other connections (TLS, raw TCP, MQTT) are closed at once.
            Default 1000.
        max_ws_message_size: largest WebSocket message in payload bytes
            (fragments added up); above it the connection is closed with
            status 1009.  Default ``None``: up to the 3 MiB receive buffer.

    Raises:
        TypeError: a size or count is not an ``int`` (``bool`` included), a
            timeout not a number.
        ValueError: a size is negative, a count or timeout not positive, or a
            timeout not finite.
    """

    __slots__ = _FIELDS

    max_body_size: Optional[int]
    max_header_size: Optional[int]
    header_timeout: Optional[float]
    idle_timeout: Optional[float]
    max_connections: Optional[int]
    max_ws_message_size: Optional[int]

    def __init__(self, *, max_body_size: Optional[int] = None,
                 max_header_size: Optional[int] = 32 * 1024,
                 header_timeout: Optional[float] = 30.0,
                 idle_timeout: Optional[float] = 5.0,
                 max_connections: Optional[int] = None,
                 max_ws_message_size: Optional[int] = None) -> None:
        values = (
            _size(max_body_size, "max_body_size", 0),
            _size(max_header_size, "max_header_size", 1),
            _seconds(header_timeout, "header_timeout"),
            _seconds(idle_timeout, "idle_timeout"),
            _size(max_connections, "max_connections", 1),
            _size(max_ws_message_size, "max_ws_message_size", 0),
        )
        for name, value in zip(_FIELDS, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Limits is immutable; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Limits is immutable")

    def replace(self, **changes: Any) -> "Limits":
        """A copy with some fields changed (same validation as ``Limits()``).

        Raises:
            TypeError: an unknown field, or a bad value type.
            ValueError: a bad value.
        """
        for name in changes:
            if name not in _FIELDS:
                raise TypeError("Limits has no field %r" % name)
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields.update(changes)
        return Limits(**fields)

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        # copy and pickle would otherwise set the slots one by one
        return (_from_fields, self._key())

    def _key(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limits):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Limits(%s)" % ", ".join("%s=%r" % (name, getattr(self, name))
                                       for name in _FIELDS)


def _from_fields(*values: Any) -> Limits:
    return Limits(**dict(zip(_FIELDS, values)))


#: The limits of a listener opened without ``limits=``.
DEFAULT_LIMITS = Limits()


def _c_size(value: Optional[int]) -> int:
    return _NONE if value is None else value


def _c_ms(value: Optional[float]) -> int:
    return 0 if value is None else max(1, int(round(value * 1000)))


def attach(c: Any, limits: Optional[Limits], http: bool) -> None:
    """Give the new listener ``c`` its limits (``None``: the defaults).

    Raises:
        MongooseError: every limits slot (254 live listeners) is taken.
    """
    lim = DEFAULT_LIMITS if limits is None else limits
    rc = lib.cym_limits_attach(
        c, 1 if http else 0, _c_size(lim.max_body_size), _c_size(lim.max_header_size),
        _c_ms(lim.header_timeout), _c_ms(lim.idle_timeout),
        _c_size(lim.max_connections), _c_size(lim.max_ws_message_size))
    check_code(rc, _ATTACH_TEXTS)


def check(limits: Any) -> Optional[Limits]:
    """``limits`` if it is ``None`` or a ``Limits``; ``TypeError`` otherwise."""
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError("limits must be a cymongoose.Limits or None, got %s"
                        % type(limits).__name__)
    return limits


# Rejections are logged per peer at most _ratelog.BURST lines a window.
_limiter = PeerLogLimiter()


def _log_line(level: int, line: Any) -> None:
    """A limit was hit (C, ``cym_lim_log``): one line for the logger, unless
    its peer has used up its share of the log."""
    try:
        if logger.isEnabledFor(level):
            text = ffi.string(line).decode("utf-8", "backslashreplace")
            suppressed = _limiter.admit(peer_of_line(text))
            if suppressed is None:
                return
            if suppressed:
                text += " (%d similar lines from this peer suppressed)" % suppressed
            logger.log(level, "%s", text)
    except Exception as exc:  # a logging handler that raises: reported, loop goes on
        _dispatch.print_exception(exc)


ffi.def_extern(name="_cym_limits_log", onerror=_dispatch._on_escape)(_log_line)
