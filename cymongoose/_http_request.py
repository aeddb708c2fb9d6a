"""Request helpers shared by the WSGI environ and the ASGI scope."""

import threading
from typing import Any, Optional, Tuple

from ._ffi import ffi, lib
from .messages import HttpMessage

#: Bytes of the per-thread buffer ``head_blob`` copies into (a larger head
#: gets a buffer of its own).
_SCRATCH_SIZE = 16384
_scratch = threading.local()


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
    """(path, query) of a request: Mongoose may leave ``?query`` in ``uri``;
    an absolute-form target (``http://host/p``) gives its path, and a
    ``#fragment`` is cut off, as ``cym_http_head`` does
    (``_csrc/http_head.c``)."""
    uri = hm.uri
    query = hm.query
    if "?" in uri:
        uri, _, rest = uri.partition("?")
        query = query or rest
    if "#" in uri:
        uri, query = uri.partition("#")[0], ""
    elif "#" in query:
        query = query.partition("#")[0]
    if uri[:1] != "/" and uri[:8].lower().startswith(("http://", "https://")):
        path = uri.partition("://")[2].partition("/")
        uri = path[1] + path[2] if path[1] else "/"
    return uri, query


def peer_of(conn: Any) -> Tuple[str, int]:
    """The client's (ip, port); ``("127.0.0.1", 0)`` when it is not known."""
    remote = conn.remote_addr
    return (remote[0], remote[1]) if remote else ("127.0.0.1", 0)



def head_blob(hm: Any, form: int = lib.CYM_HEAD_AS_IS) -> Optional[bytes]:
    """Method, uri, query, proto, then header names and values alternating,
    separated by NUL bytes, from one C copy of the head; ``form`` says how
    the names come (``cym_http_head``: as they are, ``CYM_HEAD_LOWER`` or
    as WSGI environ keys with ``CYM_HEAD_CGI``).  None when the head must
    be read field by field (a duck-typed ``hm``, a field holding NUL, and
    with ``CYM_HEAD_CGI`` two headers of the same key)."""
    if not isinstance(hm, HttpMessage):
        return None
    addr = hm._addr
    if not addr:
        return None
    # A buffer per thread, reused: allocating one per request costs more
    # than the copy (most of all on PyPy).
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = ffi.new("char[]", _SCRATCH_SIZE)
    n = lib.cym_http_head(addr, buf, _SCRATCH_SIZE, form)
    if n > _SCRATCH_SIZE:
        buf = ffi.new("char[]", n)  # a rare huge head: not kept
        n = lib.cym_http_head(addr, buf, n, form)
    if n < 0:
        return None
    blob: bytes = ffi.unpack(buf, n - 1)
    return blob
