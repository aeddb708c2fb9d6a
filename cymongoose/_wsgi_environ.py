"""The PEP 3333 environ of a request, and ``wsgi.file_wrapper``."""

import io
import sys
from typing import Any, Dict, Optional
from urllib.parse import unquote_to_bytes

from ._http_request import peer_of, request_target, wsgi_str


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



#: The entries every environ shares; ``build_environ`` copies it.
_STATIC = {
    "SCRIPT_NAME": "",
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    "wsgi.input_terminated": True,
}


def build_environ(hm: Any, conn: Any, server_name: str, server_port: int,
                  body: Optional[bytes] = None, multithread: bool = True) -> Dict[str, Any]:
    """The environ of a request; ``wsgi.input`` reads ``body`` (by default
    ``hm.body_bytes``); ``wsgi.multithread`` is ``multithread``.

    ``hm`` needs ``method``, ``uri``, ``query``, ``proto``, ``header(name,
    default)`` and ``headers()``; ``conn`` needs ``is_tls`` and
    ``remote_addr``.  Strings carry the raw bytes as latin-1; headers whose
    names contain ``_`` are dropped, so ``X_User`` cannot pose as ``X-User``.
    """
    if body is None:
        body = hm.body_bytes
    uri, query = request_target(hm)
    ip, port = peer_of(conn)
    environ = _STATIC.copy()
    environ["REQUEST_METHOD"] = hm.method
    environ["PATH_INFO"] = (uri if "%" not in uri and uri.isascii()
                            else unquote_to_bytes(uri).decode("latin-1"))
    environ["QUERY_STRING"] = wsgi_str(query)
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = str(server_port)
    environ["SERVER_PROTOCOL"] = hm.proto or "HTTP/1.1"
    environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = ip
    environ["REMOTE_PORT"] = str(port)
    environ["wsgi.url_scheme"] = "https" if conn.is_tls else "http"
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.errors"] = sys.stderr
    if not multithread:
        environ["wsgi.multithread"] = False
    for name, value in hm.headers():
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if not value.isascii():
            value = wsgi_str(value)
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
            continue
        key = "HTTP_" + key
        old = environ.get(key)
        environ[key] = value if old is None else old + ", " + value
    return environ
