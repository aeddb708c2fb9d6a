"""The ASGI ``http`` and ``websocket`` scopes of a request, and header
conversion for ``send``."""

from typing import Any, Dict, List, Optional
from urllib.parse import unquote

from ._http_request import peer_of, request_target
from .forwarded import Front

_ASGI = {"version": "3.0", "spec_version": "2.4"}


def _scope_common(hm: Any, conn: Any, server_name: str, server_port: int,
                  scheme: str) -> Dict[str, Any]:
    uri, query = request_target(hm)
    client = list(peer_of(conn))
    proto = hm.proto or "HTTP/1.1"
    return {
        "asgi": dict(_ASGI),
        "http_version": proto.split("/", 1)[-1],
        "scheme": scheme + ("s" if conn.is_tls else ""),
        "path": unquote(uri),
        "raw_path": uri.encode("utf-8", "surrogateescape"),
        "query_string": query.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "headers": [[name.lower().encode("utf-8", "surrogateescape"),
                     value.encode("utf-8", "surrogateescape")] for name, value in hm.headers()],
        "client": client,
        "server": [server_name, server_port],
    }


def build_http_scope(hm: Any, conn: Any, server_name: str, server_port: int,
                     front: Optional[Front] = None) -> Dict[str, Any]:
    """The ``http`` scope of a request (``hm``, ``conn`` and ``front`` as for
    ``cymongoose._wsgi_environ.build_environ``; the body is not read)."""
    scope = _scope_common(hm, conn, server_name, server_port, "http")
    scope["type"] = "http"
    scope["method"] = hm.method
    if front is not None:
        front.apply_scope(scope)
    return scope


def build_ws_scope(hm: Any, conn: Any, server_name: str, server_port: int,
                   front: Optional[Front] = None) -> Dict[str, Any]:
    """The ``websocket`` scope of an upgrade request."""
    scope = _scope_common(hm, conn, server_name, server_port, "ws")
    scope["type"] = "websocket"
    offered = hm.header("Sec-WebSocket-Protocol", "") or ""
    scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
    scope["extensions"] = {"websocket.http.response": {}}
    if front is not None:
        front.apply_scope(scope)
    return scope


def header_pairs(raw: Any) -> List[Any]:
    """ASGI ``headers`` as (str, str) pairs; CR, LF or NUL raise ``ValueError``."""
    pairs = []
    for name, value in raw or ():
        n = bytes(name).decode("latin-1")
        v = bytes(value).decode("latin-1")
        for part in (n, v):
            if "\r" in part or "\n" in part or "\0" in part:
                raise ValueError("header contains CR, LF or NUL: %r" % (part,))
        pairs.append((n, v))
    return pairs

