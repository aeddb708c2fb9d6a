"""Graceful stop with a slow reader: a finished response still in the send
buffer is delivered in full, not cut off by the idle-connection sweep."""

import socket
import threading

import cymongoose._http_server as http_server
from support.servers import WsgiThread
from support.sockets import read_until

BODY = bytes(range(251)) * 32_000  # 8 MB: more than the kernel buffers hold


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [BODY]


def test_idle_sweep_at_shutdown_keeps_unsent_response(monkeypatch):
    monkeypatch.setattr(http_server, "IDLE_LINGER", 0.0)
    server = WsgiThread(app, workers=0)
    swept = threading.Event()
    core = server.server._core
    sweep = core._close_idle

    def close_idle() -> None:
        sweep()
        swept.set()

    core._close_idle = close_idle
    with socket.socket() as s:
        # A receiver that takes almost nothing until told to: the response
        # stays in the server's buffers.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_until(s, lambda b: b"\r\n\r\n" in b)
        assert head.startswith(b"HTTP/1.1 200")
        server.server.stop()
        assert swept.wait(10), "the idle sweep did not run"
        data = head
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    server.thread.join(30)
    assert not server.thread.is_alive()
    assert data.split(b"\r\n\r\n", 1)[1] == BODY
