"""Plain-socket helpers: free ports, raw connections, bounded reads."""

import socket
import struct
import time
from typing import Callable, Optional


def free_port() -> int:
    """A port the OS just reported free on 127.0.0.1 (for servers that need it up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` with Nagle off, so small writes go out at once."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes (EOF or reset), bounded."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_until(sock: socket.socket, until: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Read until ``until(received)`` holds or the peer closes; each read bounded."""
    sock.settimeout(timeout)
    got = b""
    while not until(got):
        piece = sock.recv(65536)
        if not piece:
            break
        got += piece
    return got


def ipv6_loopback() -> Optional[str]:
    """Why ``[::1]`` is unusable here, or ``None`` when it works."""
    if not socket.has_ipv6:
        return "Python built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return "cannot bind [::1]: %s" % exc
    return None
