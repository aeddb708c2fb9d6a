"""The checks RFC 6455 section 4.2 asks of a WebSocket opening handshake,
for the ASGI server: a request that asks for ``Upgrade: websocket`` but
breaks them is answered with an error, never upgraded and never passed to
the application as plain HTTP; an application's ``websocket.accept`` that
would break the answer raises in the application."""

import base64
import binascii
from typing import Any, Dict, List, Optional, Tuple

from ._asgi_scope import header_pairs

#: The header a 426 names the version we speak in (RFC 6455 section 4.4).
_VERSION_HEADER = "Sec-WebSocket-Version: 13\r\n"


def handshake_refusal(hm: Any) -> Optional[Tuple[int, str]]:
    """(status, header lines) to answer an upgrade request ``hm`` with, or
    None when it is a valid opening handshake: ``400`` unless it is a GET
    of HTTP/1.1 or later whose ``Connection`` lists ``upgrade`` and whose
    ``Sec-WebSocket-Key`` is 16 bytes in base64; ``426`` naming version 13
    when ``Sec-WebSocket-Version`` is missing or another."""
    if hm.method != "GET" or hm.proto.upper() == "HTTP/1.0":
        return 400, ""
    connection = hm.header("Connection") or ""
    if "upgrade" not in (token.strip().lower() for token in connection.split(",")):
        return 400, ""
    key = (hm.header("Sec-WebSocket-Key") or "").strip()
    try:
        if len(key) != 24 or len(base64.b64decode(key, validate=True)) != 16:
            return 400, ""
    except (binascii.Error, ValueError):  # not base64; not ASCII
        return 400, ""
    if (hm.header("Sec-WebSocket-Version") or "").strip() != "13":
        return 426, _VERSION_HEADER
    return None


#: Headers of the 101 answer that the server writes itself: an
#: application's own would contradict them (its subprotocol goes in the
#: ``subprotocol`` key, as the ASGI spec asks; there are no extensions).
_SERVER_HEADERS = frozenset((b"upgrade", b"connection", b"sec-websocket-accept",
                             b"sec-websocket-protocol", b"sec-websocket-extensions"))


def accept_headers(message: Any, offered: List[str]) -> Dict[str, str]:
    """The extra header lines of the 101 answer to ``websocket.accept``
    ``message``, the subprotocol among them.  Raises ``ValueError`` for a
    subprotocol the client did not offer (``offered``: RFC 6455 section
    4.2.2), a header the server writes itself, or a bad header
    (``header_pairs``), and ``TypeError`` for a subprotocol not a str."""
    headers = {}
    for name, value in header_pairs(message.get("headers")):
        if name.lower() in _SERVER_HEADERS:
            raise ValueError("websocket.accept header %r is the server's to write "
                             "(use the 'subprotocol' key)" % (name,))
        headers[name.decode("latin-1")] = value.decode("latin-1")
    sub = message.get("subprotocol")
    if sub is not None and sub != "":  # None or "": no subprotocol
        if not isinstance(sub, str):
            raise TypeError("websocket.accept subprotocol must be a str, not %r" % (sub,))
        if sub not in offered:
            raise ValueError("subprotocol %r was not offered by the client (offered: %r)"
                             % (sub, offered))
        headers["Sec-WebSocket-Protocol"] = sub
    return headers
