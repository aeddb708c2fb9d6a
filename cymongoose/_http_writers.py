"""Response writers of the HTTP server core: status lines, response heads
and the one error response both servers send.

The reason phrases come from Mongoose's own table (the one
``mg_http_reply`` uses), read through ``cym_http_status_text``.
"""

from itertools import chain
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ._ffi import ffi, lib

if TYPE_CHECKING:
    from ._http_exchange import Exchange

# Outbox operations for body pieces: a bit mask for cym_adapters_write.
RAW = 0
CHUNK = int(lib.CYM_AD_CHUNK)
END = int(lib.CYM_AD_END)

_chain = chain.from_iterable

_reasons: Dict[int, str] = {}


def status_text(code: int) -> str:
    """Mongoose's reason phrase for ``code``; empty when it has none."""
    text = _reasons.get(code)
    if text is None:
        if not -2 ** 31 <= code < 2 ** 31:
            return ""
        text = ffi.string(lib.cym_http_status_text(code)).decode("latin-1")
        if 100 <= code < 1000:  # memoised: the table is small and fixed
            _reasons[code] = text
    return text


_status_lines: Dict[int, bytes] = {}


def status_line(code: int) -> bytes:
    """``b"HTTP/1.1 <code> <reason>"``."""
    line = _status_lines.get(code)
    if line is None:
        line = ("HTTP/1.1 %d %s" % (code, status_text(code))).encode("latin-1")
        if 100 <= code < 1000:
            _status_lines[code] = line
    return line


def http_date() -> str:
    """The ``Date`` header value for now (``cym_http_date_line``, which the
    framers below also use, formats it once per second)."""
    text: str = ffi.string(lib.cym_http_date_line())[6:].decode("latin-1")
    return text


def error_response(status: int, close: bool = False, headers: str = "") -> bytes:
    """A complete plain-text response whose body is the reason phrase
    (``500 Internal Server Error``, ``413``, ``503``...); with ``close`` it
    says ``Connection: close``; ``headers`` are whole header lines to add."""
    body = status_text(status) or "Error"
    return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            "Date: %s\r\n%s%s\r\n%s" % (status, status_text(status), len(body), http_date(),
                                         headers, "Connection: close\r\n" if close else "",
                                         body)).encode("latin-1")


#: The framers' flags for a request (``Exchange.frame_bits``): it wants no
#: body (HEAD; the framer adds 1xx, 204 and 304 itself), or it is HTTP/1.0.
FRAME_NO_BODY = int(lib.CYM_FR_NO_BODY)
FRAME_HTTP10 = int(lib.CYM_FR_HTTP10)
_CLOSE = int(lib.CYM_FR_CLOSE)
_EROOM = int(lib.CYM_FR_EROOM)
_ELENGTH = int(lib.CYM_FR_ELENGTH)
_SIZE_BITS = int(lib.CYM_FR_SIZE_BITS)
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_CLOSE_BIT = _SIZE_BITS + 2
_WHOLE_BIT = _SIZE_BITS + 3
_RECV_BIT = _SIZE_BITS + 4
#: Bytes of the per-thread buffer responses are framed in (a larger one is
#: made for a larger response and not kept).
_SCRATCH_SIZE = 16384
_scratch = threading.local()


class Framed:
    """A framed response head (``frame_response``)."""

    __slots__ = ("buf", "size", "op", "length", "whole")

    def __init__(self, buf: Any, size: int, op: int, length: Optional[int],
                 whole: bool) -> None:
        #: The head, and the body after it when ``whole``: ``buf[0:size]``.
        #: ``buf`` is the thread's scratch buffer: use it before framing
        #: the next response.
        self.buf = buf
        self.size = size
        #: Outbox operation for body pieces (-1: the response has no body).
        self.op = op
        #: The length the body must have, if any.
        self.length = length
        #: The body given to ``frame_response`` follows the head: the
        #: response is complete.
        self.whole = whole

    def data(self) -> bytes:
        """A copy of ``buf[0:size]``."""
        data: bytes = ffi.unpack(self.buf, self.size)
        return data


def flat_headers(pairs: Any) -> Tuple[bytes, int]:
    """Header (name, value) pairs of bytes-like objects as one NUL-joined
    run and their count, for ``frame_response``.  ``TypeError`` for a name
    or value that is not bytes-like."""
    if not isinstance(pairs, (list, tuple)):
        pairs = list(pairs or ())
    try:
        flat = b"\0".join(_chain(pairs))  # C all the way: no comprehension frame
    except TypeError:
        raise TypeError("header names and values must be bytes, not %r" % (
            [type(part).__name__ for pair in pairs for part in pair],)) from None
    return flat, len(pairs)


def frame_whole_into(ex: "Exchange", c: Any, code: int, line: bytes, flat: bytes,
                     npairs: int, body: bytes, total: int) -> int:
    """Frame a whole response (``frame_response``'s rules and arguments)
    straight into the send buffer of ``c``, the connection's C struct, in
    one C call.  ``total`` is ``len(body)`` when ``body`` is the entire
    body, -1 when more may follow: then only the application's own
    ``Content-Length`` (or a response without a body) makes ``body`` the
    whole of it.  Returns 0 when written, 1 when written and bytes of a
    next request wait in the receive buffer, and -1, with nothing written,
    when the head would frame another body than this one (the
    application's own ``Content-Length`` differs, or there is none and
    ``total`` is -1) or a header is bad: the caller then takes the general
    path, which reports it."""
    n: int = lib.cym_http_respond(c, line, len(line), flat, len(flat), npairs, total, body,
                                  len(body), code,
                                  (ex.frame_bits | _CLOSE) if ex.close_after else ex.frame_bits)
    if n < 0 or not n >> _WHOLE_BIT & 1:
        return -1
    if n >> _CLOSE_BIT & 1:
        ex.close_after = True
    return n >> _RECV_BIT & 1


def frame_response(ex: "Exchange", code: int, line: bytes, flat: bytes, npairs: int,
                   total: Optional[int], body: Optional[bytes] = None) -> Framed:
    """The head of a response and how its body is framed, in one C call
    (``cym_http_frame``).

    ``line`` is the status line; ``flat`` and ``npairs`` are the
    application's headers (``flat_headers``); ``total`` is the body length
    when the producer already knows it.  With ``body``, a response whose
    head frames exactly that body gets it copied after the head
    (``Framed.whole``).  Framing: the application's ``Content-Length``, else
    ``total``, else chunked (HTTP/1.1 clients) or the end of the connection
    (HTTP/1.0).  Hop-by-hop headers of the application are dropped (the
    server frames the body), as is a 204's ``Content-Length``; ``Date`` is
    added, and ``Connection`` says what happens next (``ex.close_after`` is
    set when the connection closes).
    Raises ``ValueError`` for a name that is not a token (empty, or with a
    space, colon or other separator), a control character other than tab
    in a value (CR, LF, NUL), a pair that is not two items, a
    ``Content-Length`` that is not a number, or two that differ (a repeat
    of the same one is sent once).
    """
    flags = (ex.frame_bits | _CLOSE) if ex.close_after else ex.frame_bits
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = ffi.new("char[]", _SCRATCH_SIZE)
        _scratch.res = ffi.new("struct cym_http_framing *")
    res = _scratch.res
    if total is None:
        total = -1
    if body is None:
        body, blen = ffi.NULL, 0
    else:
        blen = len(body)
    n = lib.cym_http_frame(line, len(line), flat, len(flat), npairs, total, body, blen, code,
                           flags, buf, _SCRATCH_SIZE, res)
    if n == _EROOM:
        room = res.need
        buf = ffi.new("char[]", room)
        n = lib.cym_http_frame(line, len(line), flat, len(flat), npairs, total, body, blen,
                               code, flags, buf, room, res)
    if n < 0:
        if n == _ELENGTH:
            raise ValueError("invalid Content-Length in the response headers")
        raise ValueError("invalid response header: a name that is not a token (RFC 9110 "
                         "5.1), a control character in a value, or a pair that is not "
                         "two items")
    if n >> _CLOSE_BIT & 1:
        ex.close_after = True
    op = (n >> _SIZE_BITS & 3) - 1
    if n >> _WHOLE_BIT & 1:
        return Framed(buf, n & _SIZE_MASK, op, None, True)
    length = res.length
    return Framed(buf, n & _SIZE_MASK, CHUNK if op == 1 else op, length if length >= 0 else None,
                  False)
