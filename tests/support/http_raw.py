"""Helpers for the core tests: raw HTTP over sockets and polling on this thread."""

import socket
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import cymongoose as cm
from conftest import wait_until

Response = Tuple[int, List[Tuple[str, str]], bytes]


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes; fail after ``timeout`` seconds."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and return every byte the server sends until it closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(data)
        return recv_all(sock, timeout)


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


def poll_until(mgr: cm.Manager, predicate: Callable[[], Any], timeout: float = 10.0,
               poll_ms: int = 10) -> Any:
    """Poll ``mgr`` on this thread until ``predicate()`` is truthy, bounded."""
    return wait_until(lambda: predicate() or mgr.poll(poll_ms), timeout, interval=0)


class InThread:
    """Run ``fn`` on a thread; ``result()`` returns its value or raises its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._box: List[Tuple[bool, Any]] = []
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._box.append((True, fn()))
        except BaseException as exc:  # handed back to result()
            self._box.append((False, exc))

    @property
    def done(self) -> bool:
        return bool(self._box)

    def result(self, timeout: float = 10.0) -> Any:
        self.thread.join(timeout)
        assert self._box, "thread did not finish within %.1fs" % timeout
        ok, value = self._box[0]
        if not ok:
            raise value
        return value


def run_while_polling(mgr: cm.Manager, fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run a blocking client ``fn`` on a thread while this thread polls ``mgr``."""
    job = InThread(fn)
    poll_until(mgr, lambda: job.done, timeout)
    return job.result()


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
