"""The checks RFC 6455 section 4.2.1 asks of a WebSocket opening handshake,
for the ASGI server: a request that asks for ``Upgrade: websocket`` but
breaks them is answered with an error, never upgraded and never passed to
the application as plain HTTP."""

import base64
import binascii
from typing import Any, Optional, Tuple

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
