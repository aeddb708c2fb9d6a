"""Response writers of the HTTP server core: status lines, response heads
and the one error response both servers send.

The reason phrases come from Mongoose's own table (the one
``mg_http_reply`` uses), read through ``cym_http_status_text``.
"""

import email.utils
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from ._ffi import ffi, lib

if TYPE_CHECKING:
    from ._http_exchange import Exchange

# Outbox operations for body pieces: a bit mask for cym_adapters_write.
RAW = 0
CHUNK = int(lib.CYM_AD_CHUNK)
END = int(lib.CYM_AD_END)

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


_date_cache: List[Any] = [0, "", b""]


def http_date() -> str:
    """The ``Date`` header value for now, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        date = email.utils.formatdate(now, usegmt=True)
        _date_cache[:] = [now, date, ("Date: " + date).encode("latin-1")]
    text: str = _date_cache[1]
    return text


def _date_line() -> bytes:
    """``b"Date: ..."`` for now (the same cache as ``http_date``)."""
    if _date_cache[0] != int(time.time()):
        http_date()
    line: bytes = _date_cache[2]
    return line


def error_response(status: int, close: bool = False) -> bytes:
    """A complete plain-text response whose body is the reason phrase
    (``500 Internal Server Error``, ``413``, ``503``...); with ``close`` it
    says ``Connection: close``."""
    body = status_text(status) or "Error"
    return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            "Date: %s\r\n%s\r\n%s" % (status, status_text(status), len(body), http_date(),
                                       "Connection: close\r\n" if close else "",
                                       body)).encode("latin-1")


_HOP_BY_HOP = frozenset((b"transfer-encoding", b"te", b"trailer", b"upgrade",
                         b"proxy-connection"))
#: Names ``frame_response`` looks at: hop-by-hop ones and the framing ones.
_SPECIAL = _HOP_BY_HOP | {b"content-length", b"connection", b"date"}


def frame_response(ex: "Exchange", code: int, line: bytes,
                   headers: Iterable[Tuple[bytes, bytes]],
                   total: Optional[int]) -> Tuple[bytes, int, Optional[int]]:
    """The head of a response and how its body is framed.

    ``line`` is the status line; ``headers`` are the application's, as
    checked bytes (no CR, LF or NUL); ``total`` is the body length when the
    producer already knows it.  Returns the head bytes, the outbox
    operation for body pieces (-1: the response has no body) and the length
    the body must have, if any.  Framing: the application's
    ``Content-Length``, else ``total``, else chunked (HTTP/1.1 clients) or
    the end of the connection (HTTP/1.0).  Hop-by-hop headers of the
    application are dropped (the server frames the body), ``Date`` is
    added, and ``Connection`` says what happens next.  Raises
    ``ValueError`` for a ``Content-Length`` that is not a number.
    """
    no_body = ex.method == "HEAD" or code < 200 or code in (204, 304)
    lines = [line]
    length = None
    has_date = app_connection = False
    for name, value in headers:
        low = name.lower()
        if low in _SPECIAL:
            if low in _HOP_BY_HOP:
                continue
            if low == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ValueError("invalid Content-Length %r" % (value,)) from None
            elif low == b"connection":
                app_connection = True
                if b"close" in value.lower():
                    ex.close_after = True
            else:
                has_date = True
        lines.append(name + b": " + value)
    if not has_date:
        lines.append(_date_line())
    op = RAW
    if no_body:
        op = -1
    elif length is None:
        if total is not None:
            length = total
            lines.append(b"Content-Length: %d" % total)
        elif not ex.http10:
            op = CHUNK
            lines.append(b"Transfer-Encoding: chunked")
        else:
            ex.close_after = True  # the body ends when the connection does
    if not app_connection:
        if ex.close_after:
            lines.append(b"Connection: close")
        elif ex.http10:
            lines.append(b"Connection: keep-alive")
    lines.append(b"\r\n")
    return b"\r\n".join(lines), op, length
