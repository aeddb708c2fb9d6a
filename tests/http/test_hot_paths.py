"""The optimised hot paths behave exactly like the general ones.

``Connection.reply`` has a fast path (int status, bytes body, no headers)
and ``cym_reply`` builds the head with memcpy, falling back to printf for
header blocks too big for its stack buffer; the dispatcher has a fast path
for common events on known connections inside ``poll()``.  These tests pin
the bytes on the wire and the handler-visible behaviour of each branch.
"""

import socket
from typing import Any, List

import pytest

import cymongoose as cm
from support.loop import wait_until


def raw_exchange(port: int, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> bytes:
    """Send one request and read the whole response (Content-Length framed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, "server closed before the head: %r" % buf
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")][0]
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk, "server closed mid-body"
            body += chunk
        return head + b"\r\n\r\n" + body


def replying(*args: Any, **kwargs: Any) -> Any:
    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, hm: Any) -> None:
        conn.reply(*args, **kwargs)
    return handler


@pytest.mark.parametrize("status,body,expected", [
    (200, b"ok", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"),
    (404, b"", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"),
    (299, b"a\0b", b"HTTP/1.1 299 \r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\na\0b"),
    (200, "h\u00e9", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nh\xc3\xa9"),
])
def test_reply_bytes_on_the_wire(server_factory, status, body, expected):
    _, port = server_factory(replying(status, body))
    assert raw_exchange(port) == expected


def test_reply_with_headers_and_a_body_bigger_than_the_stack_buffer(server_factory):
    body = bytes(range(256)) * 40  # 10,240 bytes: sent after the head
    _, port = server_factory(replying(201, body, {"X-A": "1", "Content-Type": "a/b"}))
    assert raw_exchange(port) == (b"HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Type: a/b\r\n"
                                  b"Content-Length: 10240\r\n\r\n" + body)


def test_reply_with_a_header_block_bigger_than_the_stack_buffer(server_factory):
    value = "v" * 3000  # the head no longer fits: the printf fallback
    _, port = server_factory(replying(200, b"xyz", {"X-Big": value}))
    assert raw_exchange(port) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Big: "
                                  + value.encode() + b"\r\nContent-Length: 3\r\n\r\nxyz")


def test_reply_with_a_negative_status_is_written_as_is(server_factory):
    _, port = server_factory(replying(-5, b"n"))
    assert raw_exchange(port).startswith(b"HTTP/1.1 -5 ")


@pytest.mark.parametrize("status,exc", [(2 ** 31, OverflowError), (-2 ** 31 - 1, OverflowError),
                                        ("200", TypeError), (None, TypeError)])
def test_reply_bad_status_raises_before_sending(server_factory, status, exc):
    errors: List[BaseException] = []

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, hm: Any) -> None:
        try:
            conn.reply(status, b"x")
        except Exception as e:  # checked by the test
            errors.append(e)
        conn.reply(500, b"checked")

    _, port = server_factory(handler)
    assert raw_exchange(port).endswith(b"\r\n\r\nchecked")
    assert len(errors) == 1 and isinstance(errors[0], exc)


def test_reply_on_a_closing_connection_raises(server_factory):
    errors: List[BaseException] = []

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, hm: Any) -> None:
        conn.close()
        try:
            conn.reply(200, b"late")
        except RuntimeError as e:
            errors.append(e)

    _, port = server_factory(handler)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100) == b""  # closed without a response
    assert [str(e) for e in errors] == ["Connection has been closed"]


def test_fast_path_views_die_after_the_handler_and_errors_are_reported(server_factory):
    kept: List[Any] = []
    reported: List[BaseException] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            kept.append((data, data.uri))
            conn.reply(200, b"ok")
            raise ValueError("after the reply")

    _, port = server_factory(handler, error_handler=reported.append)
    assert raw_exchange(port, b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"ok")
    wait_until(lambda: reported)
    view, uri = kept[0]
    assert uri == "/p" and view.uri == "" and not view
    assert isinstance(reported[0], ValueError)


def test_plain_handler_sees_every_event_of_a_request(server_factory):
    seen: List[int] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if not conn.is_listening:
            seen.append(ev)
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, b"ok")

    loop, port = server_factory(handler)
    raw_exchange(port)
    wait_until(lambda: cm.MG_EV_CLOSE in seen)
    for ev in (cm.MG_EV_OPEN, cm.MG_EV_ACCEPT, cm.MG_EV_READ, cm.MG_EV_HTTP_HDRS,
               cm.MG_EV_HTTP_MSG, cm.MG_EV_WRITE, cm.MG_EV_CLOSE):
        assert ev in seen
    assert seen.index(cm.MG_EV_HTTP_HDRS) < seen.index(cm.MG_EV_HTTP_MSG)
    assert loop.call(lambda: loop.mgr.live_handles) == 1  # the listener only


def test_keyboard_interrupt_in_a_fast_path_handler_is_raised_by_poll():
    armed: List[bool] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_POLL and armed:
            raise KeyboardInterrupt

    with cm.Manager() as mgr:
        mgr.listen("tcp://127.0.0.1:0", handler)
        mgr.poll(0)  # the listener's Connection exists from now on
        armed.append(True)
        with pytest.raises(KeyboardInterrupt):
            mgr.poll(0)
        armed.clear()
        mgr.poll(0)  # raised once, then the loop goes on
