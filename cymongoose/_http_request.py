"""Request helpers shared by the WSGI environ and the ASGI scope."""

from typing import Any, Optional, Tuple

from ._ffi import ffi, lib
from .messages import HttpMessage

_HM_HEAD = ffi.offsetof("struct mg_http_message", "head")


def server_name_of(url: str) -> str:
    """The host of a listen URL; the wildcard addresses read ``127.0.0.1``."""
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return host


def wsgi_str(s: str) -> str:
    """A decoded header/URI text back to PEP 3333's bytes-as-latin-1 string."""
    if s.isascii():
        return s
    return s.encode("utf-8", "surrogateescape").decode("latin-1")


def request_target(hm: Any) -> Tuple[str, str]:
    """(path, query) of a request: Mongoose may leave ``?query`` in ``uri``."""
    uri = hm.uri
    query = hm.query
    if "?" in uri:
        uri, _, rest = uri.partition("?")
        query = query or rest
    return uri, query


def peer_of(conn: Any) -> Tuple[str, int]:
    """The client's (ip, port); ``("127.0.0.1", 0)`` when it is not known."""
    remote = conn.remote_addr
    return (remote[0], remote[1]) if remote else ("127.0.0.1", 0)



def head_blob(hm: Any) -> Optional[bytes]:
    """Method, uri, query, proto, then header names and values alternating,
    separated by NUL bytes, from one C copy of the head; None when the head
    must be read field by field (a duck-typed ``hm``, a field holding NUL)."""
    if not isinstance(hm, HttpMessage):
        return None
    p = hm._ptr()
    if p is None:
        return None
    # Every field is a piece of the head (uri and query may overlap): twice
    # its length always has room, and a small buffer is cheap to allocate.
    room = 2 * lib.cym_str_len(int(hm._addr) + _HM_HEAD) + 16
    buf = ffi.new("char[]", room)
    n = lib.cym_http_head(p, buf, room)
    if n < 0:
        return None
    blob: bytes = ffi.unpack(buf, n)
    return blob
