"""WSGI and ASGI servers on background threads, and raw exchanges with them."""

import asyncio
import hashlib
import socket
import threading
from typing import Any, Callable, Iterator, Optional

import httpx

from cymongoose.asgi import ASGIServer
from cymongoose.wsgi import WSGIServer
from support.fixtures import made
from support.sockets import read_until


class WsgiThread:
    """A WSGIServer listening on a free port, run() on a background thread."""

    def __init__(self, app: Callable[..., Any], tls: Any = None, poll_ms: int = 50,
                 **options: Any) -> None:
        self.server = WSGIServer(app, **options)
        scheme = "https" if tls else "http"
        self.port = self.server.listen("%s://127.0.0.1:0" % scheme, tls).local_addr[1]
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.thread = threading.Thread(target=self.server.run, kwargs={"poll_ms": poll_ms},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "WSGI server did not stop"


class AsgiThread:
    """An ASGIServer started on an asyncio loop that runs on a background thread."""

    def __init__(self, app: Any, tls: Any = None,
                 configure: Optional[Callable[[ASGIServer], Any]] = None, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ASGIServer(app, **options)
        if configure is not None:
            configure(self.server)
        try:
            scheme = "https" if tls else "http"
            conn = self.run(self.server.start("%s://127.0.0.1:0" % scheme, tls))
        except BaseException:
            self._close_loop()
            raise
        self.port = conn.local_addr[1]
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.ws_url = "%s://127.0.0.1:%d" % ("wss" if tls else "ws", self.port)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.run(self.server.stop(), 60)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def started(server_class: Any) -> Iterator[Callable[..., Any]]:
    """Body of a ``start`` fixture: ``start(app, **options)`` serves ``app``
    with ``server_class`` (WsgiThread or AsgiThread); all stop at teardown."""
    return made(server_class, server_class.stop)


def raw_exchange(port: int, data: bytes, until: Callable[[bytes], bool],
                 timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until ``until(received)`` holds or the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_until(s, until)


def count_responses(data: bytes) -> int:
    return data.count(b"HTTP/1.1 ")


def check_form_and_10mib_upload(url: str) -> None:
    """The framework apps' ``/form`` echoes the fields; ``/upload`` reports name, size, sha256."""
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/form", data={"name": "Ada", "age": "36"}).text == "name=Ada age=36"
        r = c.post("/upload", files={"file": ("big.bin", data, "application/octet-stream")})
        assert r.status_code == 200
        assert r.json() == {"name": "big.bin", "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()}
