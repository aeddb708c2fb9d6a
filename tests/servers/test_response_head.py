"""The head of a final response, as both servers check it: its status is
200-599 (RFC 9110 section 15: a 1xx sent as the answer would leave the
client waiting for the real one, and reading the next response as this
request's), and it carries one Content-Length at most."""

import logging
from typing import Any

import pytest

from support.servers import AsgiThread, WsgiThread, raw_exchange


# Content-Length headers the application sends, by path (others: none).
LENGTHS = {"/same": ["4", "4"], "/differ": ["4", "5"]}


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    lengths = LENGTHS.get(path, [])
    status = "200" if lengths else path.strip("/")
    start_response(status + " Whatever", [("Content-Type", "text/plain")]
                   + [("Content-Length", n) for n in lengths])
    return [b"body"]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    lengths = LENGTHS.get(scope["path"], [])
    status = 200 if lengths else int(scope["path"].strip("/"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]
                + [(b"content-length", n.encode()) for n in lengths]})
    await send({"type": "http.response.body", "body": b"body"})


@pytest.fixture(params=["wsgi", "asgi"])
def port(request):
    srv = WsgiThread(wsgi_app) if request.param == "wsgi" else AsgiThread(asgi_app)
    try:
        yield srv.port
    finally:
        srv.stop()


def two_requests(port: int, first: Any) -> bytes:
    """``GET /first`` then ``GET /200`` on one connection: every byte of the answers."""
    return raw_exchange(port, b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        % str(first).encode(), lambda d: False)


@pytest.mark.parametrize("status", [100, 101, 103, 199, 600, 999])
def test_a_status_outside_200_599_is_an_application_error(port, status, caplog):
    with caplog.at_level(logging.ERROR, logger="cymongoose"):
        got = two_requests(port, status)
    first, _, second = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 500 ")
    assert b"HTTP/1.1 %d" % status not in got
    assert second.count(b"HTTP/1.1 200 ") == 1 and got.endswith(b"body")
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


@pytest.mark.parametrize("status", [200, 299, 404, 599])
def test_statuses_200_to_599_are_sent(port, status):
    got = two_requests(port, status)
    assert got.startswith(b"HTTP/1.1 %d " % status)
    assert got.count(b"HTTP/1.1 200 ") == (2 if status == 200 else 1)


def test_two_content_lengths_that_differ_are_an_application_error(port, caplog):
    with caplog.at_level(logging.ERROR, logger="cymongoose"):
        got = two_requests(port, "differ")
    assert got.startswith(b"HTTP/1.1 500 ")
    assert b"Content-Length: 5" not in got and b"content-length: 5" not in got
    assert got.endswith(b"body") and got.count(b"HTTP/1.1 200 ") == 1
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


def test_the_same_content_length_twice_is_sent_once(port):
    got = two_requests(port, "same")
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    assert got.startswith(b"HTTP/1.1 200 ") and head.count(b"content-length: 4") == 1
    assert got.count(b"HTTP/1.1 200 ") == 2
