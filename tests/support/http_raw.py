"""Raw HTTP/1.1 over plain sockets: requests written byte for byte, responses parsed."""

import socket
from typing import Dict, List, Tuple

from support.sockets import read_until_closed

Response = Tuple[int, List[Tuple[str, str]], bytes]


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and return every byte the server sends until it closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def get_close(port: int, target: str, extra: str = "") -> bytes:
    """A raw ``GET target`` with ``Connection: close``; returns the whole response."""
    req = "GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n" % (target, extra)
    return raw_request(port, req.encode("latin-1"))


def parse_response(raw: bytes) -> Response:
    """Split a single HTTP/1.1 response into status, header list and body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, "no end of headers in %r" % raw[:200]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return status, headers, body


def header_map(headers: List[Tuple[str, str]]) -> Dict[str, str]:
    """Lower-cased name -> value (last one wins)."""
    return {k.lower(): v for k, v in headers}
