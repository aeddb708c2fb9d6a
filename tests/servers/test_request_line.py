"""The request line as both servers read it: absolute-form targets
(RFC 9112 section 3.2.2), fragments, HTTP versions other than 1.x (RFC 9110
sections 2.5 and 15.6.6); and the one Host line a request may have (RFC
9112 section 3.2)."""

from typing import Any, Callable, List

import pytest

from cymongoose._asgi_scope import http_scope
from cymongoose._wsgi_environ import build_environ
from support.servers import AsgiThread, WsgiThread, raw_exchange


def wsgi_app(calls: List[Any]) -> Callable[..., Any]:
    def app(environ, start_response):
        calls.append((environ["PATH_INFO"], environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"path=%s" % environ["PATH_INFO"].encode("latin-1")]
    return app


def asgi_app(calls: List[Any]) -> Any:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        calls.append((scope["path"], scope["query_string"].decode(), scope["http_version"]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"path=" + scope["path"].encode()})
    return app


@pytest.fixture(params=["wsgi", "asgi"])
def server(request):
    """(port, calls): a server of each kind whose app records each request."""
    calls: List[Any] = []
    if request.param == "wsgi":
        cls, app = WsgiThread, wsgi_app(calls)
    else:
        cls, app = AsgiThread, asgi_app(calls)
    srv = cls(app)
    try:
        yield srv.port, calls
    finally:
        srv.stop()


def exchange(port: int, request: bytes) -> bytes:
    """The whole answer to one request sent with ``Connection: close``."""
    return raw_exchange(port, request, lambda d: False)


@pytest.mark.parametrize("target, path, query", [
    (b"http://example.com/a/b?x=1", "/a/b", "x=1"),
    (b"HTTPS://example.com:8443/a%20b", "/a b", ""),
    (b"http://example.com", "/", ""),
    (b"http://example.com?x=2", "/", "x=2"),
])
def test_an_absolute_form_target_gives_its_path(server, target, path, query):
    port, calls = server
    got = exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert got.endswith(b"path=" + path.encode())
    assert calls[0][:2] == (path, query)


@pytest.mark.parametrize("target, path, query", [
    (b"/p#frag", "/p", ""),
    (b"/p?a=1#frag", "/p", "a=1"),
    (b"/p#frag?a=1", "/p", ""),  # the '?' is the fragment's
    (b"http://example.com/q?b=2#f", "/q", "b=2"),
])
def test_a_fragment_is_cut_off_the_target(server, target, path, query):
    port, calls = server
    got = exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"path=" + path.encode())
    assert calls[0][:2] == (path, query)


@pytest.mark.parametrize("body", [b"\r\n", b"Content-Length: 3\r\n\r\nabc",
                                  b"Content-Length: 9\r\n\r\nabc"])
def test_two_host_lines_are_answered_400_and_the_app_is_not_called(server, body):
    port, calls = server
    got = exchange(port, b"POST /h HTTP/1.1\r\nHost: a\r\nhost: b\r\n" + body)
    assert got.startswith(b"HTTP/1.1 400 ") and b"Connection: close\r\n" in got
    assert calls == []
    # One Host line, or none (as uvicorn and gunicorn serve it), is served.
    for head in (b"Host: a\r\n", b""):
        got = exchange(port, b"GET /h HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 ")
    assert len(calls) == 2


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
@pytest.mark.parametrize("body", [b"", b"Content-Length: 3\r\n\r\nabc", b"Content-Length: 9\r\n\r\nabc"])
def test_a_version_other_than_1_x_is_answered_505_and_the_app_is_not_called(server, version,
                                                                             body):
    port, calls = server
    head = b"POST /x " + version + b"\r\nHost: x\r\n"
    got = exchange(port, head + (body or b"\r\n"))
    assert got.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"Connection: close\r\n" in got
    assert calls == []
    # The HTTP/2 connection preface gets the same answer.
    got = exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 505 ")
    assert calls == []


def test_a_higher_minor_version_is_served_as_http_1_1(server):
    port, calls = server
    got = exchange(port, b"GET /m HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"path=/m")
    if len(calls[0]) == 3:  # ASGI says which version it served
        assert calls[0][2] == "1.1"


class DuckMessage:
    """A request view that is not an HttpMessage: the fields' slow path."""

    method, query, proto = "GET", "x=1#f", "HTTP/1.2"
    uri = "http://example.com/d"
    body_bytes = b""

    def header(self, name: str, default: Any = None) -> Any:
        return default

    def headers(self) -> List[Any]:
        return [("Host", "x")]


class DuckConn:
    is_tls = False
    remote_addr = ("127.0.0.1", 1234)


def test_the_duck_typed_path_reads_the_target_the_same_way():
    environ = build_environ(DuckMessage(), DuckConn(), "localhost", 80)
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/d", "x=1")
    scope, _ = http_scope(DuckMessage(), DuckConn(), "localhost", 80)
    assert (scope["path"], scope["query_string"], scope["http_version"]) == ("/d", b"x=1", "1.1")
