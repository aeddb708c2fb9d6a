"""The PEP 3333 environ of a request, and ``wsgi.file_wrapper``."""

import io
import sys
from typing import Any, Dict, List, Optional
from urllib.parse import unquote_to_bytes

from ._ffi import lib
from ._http_request import head_blob, peer_of, request_target, wsgi_str
from .forwarded import Front


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks.

    Iterates ``filelike.read(blksize)`` until it returns an empty value;
    ``str`` blocks are encoded as UTF-8.  ``close()`` closes ``filelike``
    when it has a ``close`` method.
    """

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if not data:
            raise StopIteration
        if isinstance(data, str):
            return data.encode()
        block: bytes = data
        return block



#: The environ keys of the headers a trusted proxy sets (``forwarded.Front``).
_PROXY_KEYS = frozenset(("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                         "HTTP_X_FORWARDED_HOST"))
#: ``head_blob``'s form for an environ: each header name as its key.
_CGI = int(lib.CYM_HEAD_CGI)
#: The entries every environ shares; ``build_environ`` copies it.
_STATIC: Dict[str, Any] = {
    "SCRIPT_NAME": "",
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    "wsgi.input_terminated": True,
}


def connection_environ(conn: Any, server_name: str, server_port: int,
                       multithread: bool = True) -> Dict[str, Any]:
    """The environ entries every request on ``conn`` shares (``conn`` needs
    ``is_tls`` and ``remote_addr``): servers build it once per connection
    and pass it to ``build_environ`` as ``base``."""
    ip, port = peer_of(conn)
    environ = _STATIC.copy()
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = str(server_port)
    environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = ip
    environ["REMOTE_PORT"] = str(port)
    environ["wsgi.url_scheme"] = "https" if conn.is_tls else "http"
    if not multithread:
        environ["wsgi.multithread"] = False
    return environ


def build_environ(hm: Any, conn: Any, server_name: str, server_port: int,
                  body: Optional[bytes] = None, multithread: bool = True,
                  front: Optional[Front] = None,
                  base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The environ of a request; ``wsgi.input`` reads ``body`` (by default
    ``hm.body_bytes``); ``wsgi.multithread`` is ``multithread``.

    ``hm`` needs ``method``, ``uri``, ``query``, ``proto``, ``header(name,
    default)`` and ``headers()``; ``conn`` needs ``is_tls`` and
    ``remote_addr``.  ``front`` applies trusted proxy headers and the
    mount prefix (``forwarded.Front``).  Strings carry the raw bytes as latin-1; headers whose
    names contain ``_`` are dropped, so ``X_User`` cannot pose as ``X-User``.
    With ``base`` (``connection_environ``, which then stands for ``conn``,
    ``server_name``, ``server_port`` and ``multithread``) the caller sets
    ``wsgi.input`` itself.
    """
    blob = head_blob(hm, _CGI)
    if blob is not None:
        # One C call: every field already as PEP 3333 wants it (latin-1),
        # each header under its environ key, none twice.
        fields = blob.decode("latin-1").split("\0")
        method, uri, query, proto = fields[0], fields[1], fields[2], fields[3]
        if "?" in uri:  # Mongoose may leave ?query in uri
            uri, _, rest = uri.partition("?")
            query = query or rest
        path = uri if "%" not in uri else unquote_to_bytes(uri.encode("latin-1")).decode("latin-1")
        headers: Any = None
    else:
        method, proto = hm.method, hm.proto
        uri, query = request_target(hm)
        path = (uri if "%" not in uri and uri.isascii()
                else unquote_to_bytes(uri).decode("latin-1"))
        query = wsgi_str(query)
        headers = [(name, wsgi_str(value)) for name, value in hm.headers()]
    if base is None:
        environ = connection_environ(conn, server_name, server_port, multithread)
        environ["wsgi.input"] = io.BytesIO(hm.body_bytes if body is None else body)
    else:
        environ = base.copy()
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    environ["SERVER_PROTOCOL"] = proto or "HTTP/1.1"
    environ["wsgi.errors"] = sys.stderr
    if headers is None:
        environ.update(zip(fields[4::2], fields[5::2]))
    else:
        _add_headers(environ, headers)
    # Most requests carry no proxy header: then only a root path changes
    # anything.  (A keys view tests the four proxy keys against the
    # environ; the frozenset's own isdisjoint would walk every environ key.)
    if front is not None and (front.root_path or not environ.keys().isdisjoint(_PROXY_KEYS)):
        front.apply_environ(environ)
    return environ


def _add_headers(environ: Dict[str, Any], headers: List[Any]) -> None:
    """Each header under its environ key (``HTTP_X_Y`` for ``X-Y``), the
    values of a repeated one joined with ", "; a name holding ``_`` is left
    out, as ``cym_http_head`` leaves it out."""
    for name, value in headers:
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
            continue
        key = "HTTP_" + key
        old = environ.get(key)
        environ[key] = value if old is None else old + ", " + value

