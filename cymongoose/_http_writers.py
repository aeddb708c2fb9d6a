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


def status_line(code: int) -> str:
    """``"HTTP/1.1 <code> <reason>"``."""
    return "HTTP/1.1 %d %s" % (code, status_text(code))


_date_cache: List[Any] = [0, ""]


def http_date() -> str:
    """The ``Date`` header value for now, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    date: str = _date_cache[1]
    return date


def error_response(status: int, close: bool = False) -> bytes:
    """A complete plain-text response whose body is the reason phrase
    (``500 Internal Server Error``, ``413``, ``503``...); with ``close`` it
    says ``Connection: close``."""
    body = status_text(status) or "Error"
    return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            "Date: %s\r\n%s\r\n%s" % (status, status_text(status), len(body), http_date(),
                                       "Connection: close\r\n" if close else "",
                                       body)).encode("latin-1")


_HOP_BY_HOP = frozenset(("transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"))


def frame_response(ex: "Exchange", code: int, line: str,
                   headers: Iterable[Tuple[str, str]],
                   total: Optional[int]) -> Tuple[bytes, int, Optional[int]]:
    """The head of a response and how its body is framed.

    ``line`` is the status line; ``total`` is the body length when the
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
        if low in _HOP_BY_HOP:
            continue
        if low == "content-length":
            try:
                length = int(value)
            except ValueError:
                raise ValueError("invalid Content-Length %r" % (value,)) from None
        elif low == "connection":
            app_connection = True
            if "close" in value.lower():
                ex.close_after = True
        elif low == "date":
            has_date = True
        lines.append("%s: %s" % (name, value))
    if not has_date:
        lines.append("Date: " + http_date())
    op = RAW
    if no_body:
        op = -1
    elif length is None:
        if total is not None:
            length = total
            lines.append("Content-Length: %d" % total)
        elif not ex.http10:
            op = CHUNK
            lines.append("Transfer-Encoding: chunked")
        else:
            ex.close_after = True  # the body ends when the connection does
    if not app_connection:
        if ex.close_after:
            lines.append("Connection: close")
        elif ex.http10:
            lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), op, length
