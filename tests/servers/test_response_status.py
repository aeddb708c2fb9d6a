"""A final response's status, as both servers check it: 200-599 (RFC 9110
section 15).  A 1xx sent as the answer would leave the client waiting for
the real one, and read the next response as this request's."""

import logging
import pytest

from support.servers import AsgiThread, WsgiThread, raw_exchange


def wsgi_app(environ, start_response):
    status = environ["PATH_INFO"].strip("/")
    start_response(status + " Whatever", [("Content-Type", "text/plain")])
    return [b"body"]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": int(scope["path"].strip("/")),
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"body"})


@pytest.fixture(params=["wsgi", "asgi"])
def port(request):
    srv = WsgiThread(wsgi_app) if request.param == "wsgi" else AsgiThread(asgi_app)
    try:
        yield srv.port
    finally:
        srv.stop()


def two_requests(port: int, status: int) -> bytes:
    """``GET /status`` then ``GET /200`` on one connection: every byte of the answers."""
    return raw_exchange(port, b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        % status, lambda d: False)


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
