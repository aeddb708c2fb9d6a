"""The ASGI ``http`` and ``websocket`` scopes of a request, and header
conversion for ``send``."""

import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

from ._ffi import lib
from ._http_request import head_blob, request_target
from .forwarded import Front

_ASGI = {"version": "3.0", "spec_version": "2.4"}
#: Headers a trusted proxy sets (``forwarded.Front``).
_PROXY_HEADERS = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto",
                            b"x-forwarded-host"))


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}


def _first(headers: List[Tuple[bytes, bytes]], name: bytes) -> Optional[bytes]:
    for key, value in headers:
        if key == name:
            return value
    return None


def _version(proto: bytes) -> str:
    """ASGI's ``http_version`` of an unusual request line (``http/1.0``,
    ``HTTP/1.2``): only HTTP/1.x reaches an application (the servers answer
    505 to others), and a higher minor version is served as 1.1 (RFC 9110
    section 2.5)."""
    return "1.0" if proto[5:] == b"1.0" else "1.1"


def _scope_common(hm: Any, conn: Any, server_name: str, server_port: int,
                  scheme: str) -> Tuple[Dict[str, Any], Optional[bytes], bool]:
    """The scope entries HTTP and WebSocket share, the ``Connection`` header
    and whether any proxy header came."""
    blob = head_blob(hm, lib.CYM_HEAD_LOWER)
    connection = None
    proxied = False
    if blob is not None:
        # One C copy of the head: every field as the raw bytes ASGI wants,
        # header names already lowercased.
        fields = blob.split(b"\0")
        method = _METHODS.get(fields[0]) or fields[0].decode("latin-1")
        raw_uri, query, proto = fields[1], fields[2], fields[3]
        # (bytes.find: ``in`` on bytes first tries its argument as an int,
        # which costs CPython a formatted exception each time.)
        if raw_uri.find(b"?") >= 0:  # Mongoose may leave ?query in uri
            raw_uri, _, rest = raw_uri.partition(b"?")
            query = query or rest
        uri = raw_uri.decode("utf-8", "surrogateescape")
        version = _VERSIONS.get(proto) or _version(proto)
        headers = list(zip(fields[4::2], fields[5::2]))
        # Substring tests on the whole head first: most requests carry no
        # Connection header and no proxy header at all.
        if blob.find(b"\0connection\0") >= 0:
            connection = _first(headers, b"connection")
        if blob.find(b"forwarded") >= 0:
            proxied = any(name in _PROXY_HEADERS for name, _ in headers)
    else:
        method = hm.method
        uri, text_query = request_target(hm)
        raw_uri = uri.encode("utf-8", "surrogateescape")
        query = text_query.encode("utf-8", "surrogateescape")
        version = _version((hm.proto or "").encode("latin-1"))
        headers = [(name.lower().encode("utf-8", "surrogateescape"),
                    value.encode("utf-8", "surrogateescape")) for name, value in hm.headers()]
        connection = _first(headers, b"connection")
        proxied = any(name in _PROXY_HEADERS for name, _ in headers)
    remote = conn.remote_addr
    scope = {
        "type": scheme,
        "asgi": _ASGI.copy(),
        "http_version": version,
        "method": method,
        "scheme": scheme + ("s" if conn.is_tls else ""),
        "path": unquote(uri) if "%" in uri else uri,
        "raw_path": raw_uri,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": [remote[0], remote[1]] if remote else ["127.0.0.1", 0],
        "server": [server_name, server_port],
    }
    return scope, connection, proxied


def http_scope(hm: Any, conn: Any, server_name: str, server_port: int,
               front: Optional[Front] = None) -> Tuple[Dict[str, Any], Optional[bytes]]:
    """The ``http`` scope of a request and its ``Connection`` header (``hm``,
    ``conn`` and ``front`` as for ``cymongoose._wsgi_environ.build_environ``;
    the body is not read)."""
    scope, connection, proxied = _scope_common(hm, conn, server_name, server_port, "http")
    if front is not None and (proxied or front.root_path):
        front.apply_scope(scope)
    return scope, connection


def build_ws_scope(hm: Any, conn: Any, server_name: str, server_port: int,
                   front: Optional[Front] = None) -> Dict[str, Any]:
    """The ``websocket`` scope of an upgrade request."""
    scope, _, proxied = _scope_common(hm, conn, server_name, server_port, "ws")
    scope["type"] = "websocket"
    del scope["method"]
    offered = hm.header("Sec-WebSocket-Protocol", "") or ""
    scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
    scope["extensions"] = {"websocket.http.response": {}}
    if front is not None and (proxied or front.root_path):
        front.apply_scope(scope)
    return scope


#: A field name (RFC 9110 section 5.1), and what a field value may not
#: hold: a control character other than tab (section 5.5).
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def header_pairs(raw: Any) -> List[Tuple[bytes, bytes]]:
    """ASGI ``headers`` (of ``websocket.accept``) as (bytes, bytes) pairs.
    A name or value that is not a bytes-like object raises ``TypeError``; a
    name that is not a token, or a value with a control character other
    than tab (CR, LF, NUL...), raises ``ValueError``, as the HTTP response
    path refuses them (``cym_http_frame``)."""
    pairs = []
    for name, value in raw or ():
        if type(name) is not bytes:
            name = _as_bytes(name)
        if type(value) is not bytes:
            value = _as_bytes(value)
        if not _TOKEN.match(name) or _CTL.search(value):
            raise ValueError("invalid header: a name that is not a token or a control "
                             "character in a value: %r" % ((name, value),))
        pairs.append((name, value))
    return pairs


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        raise TypeError("ASGI header names and values must be bytes, not str: %r" % (value,))
    return bytes(value)
