"""HTTP/1.1 request framing exactly as RFC 9112 section 6 says, tested on the
whole server (a Manager handler, the WSGI server and the ASGI server) with raw
sockets: what a proxy in front of us frames as one request is one request here.
"""

import queue
import re
import socket
import threading
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import cymongoose as cm
from support.http_raw import raw_request
from support.servers import AsgiThread, WsgiThread, count_responses, raw_exchange
from support.sockets import connect, read_until_closed

Seen = List[Tuple[str, str, bytes]]


def _manager(server_factory: Any, seen: Seen) -> int:
    def handler(conn: Any, ev: int, hm: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            seen.append((hm.method, hm.uri, hm.body_bytes))
            conn.reply(200, "ok")

    return int(server_factory(handler)[1])


def _wsgi_app(seen: Seen) -> Callable[..., Any]:
    def app(environ: Any, start_response: Any) -> List[bytes]:
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"],
                     environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def _asgi_app(seen: Seen) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # disconnected: the request never completed
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((scope["method"], scope["path"], body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture(params=["manager", "wsgi", "asgi"])
def server(request: Any, server_factory: Any) -> Iterator[Tuple[int, Seen]]:
    """(port, what the application saw) for each kind of server."""
    seen: Seen = []
    if request.param == "manager":
        yield _manager(server_factory, seen), seen
        return
    thread = (WsgiThread(_wsgi_app(seen)) if request.param == "wsgi"
              else AsgiThread(_asgi_app(seen), lifespan="off"))
    try:
        yield thread.port, seen
    finally:
        thread.stop()


def _responses(port: int, data: bytes, count: int) -> bytes:
    return raw_exchange(port, data, lambda got: count_responses(got) >= count
                        and got.endswith(b"ok"))


def _statuses(raw: bytes) -> List[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def test_request_without_length_has_no_body_and_the_next_one_is_intact(server):
    # RFC 9112 6.3: neither Content-Length nor Transfer-Encoding means a
    # zero-length body, whatever the method.
    port, seen = server
    for method in (b"POST", b"PUT", b"DELETE"):
        seen.clear()
        raw = _responses(port, method + b" /a HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n", 2)
        assert _statuses(raw) == [200, 200]
        assert seen == [(method.decode(), "/a", b""), ("GET", "/b", b"")]


@pytest.mark.parametrize("first", [
    b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: foo, Close\r\n\r\n",
    b"GET /a HTTP/1.0\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
], ids=["close", "close-in-a-list", "http10", "close-after-body"])
def test_nothing_after_the_last_request_reaches_the_application(server, first):
    port, seen = server
    raw = raw_request(port, first + b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _statuses(raw) == [200]  # one answer, then the server closed
    assert b"\r\nConnection: close\r\n" in raw  # and the answer said so
    assert [s[1] for s in seen] == ["/a"]


def test_nothing_after_a_pipelined_chunked_last_request_reaches_the_application(server):
    # The chunked request is parsed on a poll, not a read, and its body taken
    # over there (WSGI, ASGI): the request after it is still the one after
    # the last.
    port, seen = server
    raw = raw_request(port, b"GET /0 HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                      b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _statuses(raw) == [200, 200]
    assert [s[1:] for s in seen] == [("/0", b""), ("/a", b"abc")]


def test_http10_keep_alive_goes_on(server):
    port, seen = server
    raw = _responses(port, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                     b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n", 2)
    assert _statuses(raw) == [200, 200]
    assert [s[1] for s in seen] == ["/a", "/b"]


@pytest.mark.parametrize("request_bytes", [
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\nxx",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    # A method or field name that is not a token, the version in lower case,
    # DEL in a value (RFC 9110 5.1, 5.5 and 9.1; RFC 9112 2.3)
    b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET / http/1.1\r\nHost: t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX(y: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX\xc3\xa9: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n",
], ids=["duplicate-cl", "conflicting-cl", "cl-list", "cl-then-te", "te-then-cl",
        "unknown-coding", "duplicate-te", "te-in-http10", "method-not-a-token",
        "version-lower-case", "field-name-not-a-token", "field-name-utf8",
        "del-in-field-value"])
def test_ambiguous_or_malformed_request_is_rejected_unseen(server, request_bytes):
    port, seen = server
    raw = raw_request(port, request_bytes)
    assert _statuses(raw) == [400]
    assert b"Connection: close" in raw
    assert seen == []


def test_unusual_but_valid_tokens_pass(server):
    port, seen = server
    raw = _responses(port, b"M-1.x~! /a HTTP/1.1\r\nHost: t\r\nX-a_b.c|d~e'f: \xe9 v\r\n"
                     b"Connection: close\r\n\r\n", 1)
    assert _statuses(raw) == [200]
    assert [s[:2] for s in seen] == [("M-1.x~!", "/a")]


@pytest.mark.parametrize("chunk", [b" 3", b"3 ", b"0x3", b"+3", b"3;\x01"],
                         ids=["space-before", "space-after", "0x", "sign", "control-in-extension"])
def test_malformed_chunk_size_line_is_rejected_unseen(request, server, chunk):
    # RFC 9112 7.1.  The Manager's parser (Mongoose's) closes without an answer.
    port, seen = server
    raw = raw_request(port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + chunk + b"\r\nabc\r\n0\r\n\r\n")
    manager = request.node.callspec.params["server"] == "manager"
    assert _statuses(raw) == ([] if manager else [400])
    assert seen == []


def test_chunk_extensions_and_trailers_are_ignored(server):
    # RFC 9112 7.1: a recipient ignores extensions it does not know, and may
    # drop trailer fields (vendor patch 0062 for the Manager's parser).
    port, seen = server
    raw = _responses(port, b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3 ;a=b\r\nabc\r\n2;c\r\nde\r\n0;d=\"e\"\r\nX-T: 1\r\nY: 2\r\n\r\n"
                     b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n", 2)
    assert _statuses(raw) == [200, 200]
    assert seen == [("POST", "/x", b"abcde"), ("GET", "/y", b"")]


@pytest.mark.parametrize("head, pieces", [
    (b"Content-Length: 5", [b"ab", b"cde"]),
    (b"Transfer-Encoding: chunked", [b"5", b"\r\nab", b"cde\r\n0", b"\r\nX-T: 1\r", b"\n\r\n"]),
], ids=["content-length", "chunked"])
@pytest.mark.parametrize("last", [b"Connection: close\r\n", b""], ids=["last", "keep-alive"])
def test_a_body_read_piece_by_piece_reaches_the_manager_handler(server_factory, head, pieces,
                                                                last):
    # Each piece is sent once the handler saw the read before it, so each is
    # a read of its own: http_cb parses the head again on every one, and the
    # limits took the repeated head of a last request for one after it.
    reads: "queue.Queue[int]" = queue.Queue()
    bodies: List[bytes] = []

    def handler(conn: Any, ev: int, hm: Any) -> None:
        if ev == cm.MG_EV_READ:
            reads.put(ev)
        elif ev == cm.MG_EV_HTTP_MSG:
            bodies.append(hm.body_bytes)
            conn.reply(200, "ok")

    port = int(server_factory(handler)[1])
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n" + last + b"\r\n")
        for piece in pieces:
            reads.get(timeout=5)
            sock.sendall(piece)
        got = b""
        while count_responses(got) < 1 or not got.endswith(b"ok"):
            data = sock.recv(4096)
            assert data, got
            got += data
    assert _statuses(got) == [200]
    assert bodies == [b"abcde"]


def test_one_header_line_too_many_gets_431_unseen(server):
    port, seen = server
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(101))  # MG_MAX_HTTP_HEADERS + 1
    raw = raw_request(port, b"GET / HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n")
    assert _statuses(raw) == [431]
    assert seen == []


def test_a_body_cut_short_by_the_peer_never_reaches_the_handler(server_factory):
    events: List[int] = []
    closed = threading.Event()

    def handler(conn: Any, ev: int, hm: Any) -> None:
        if ev in (cm.MG_EV_HTTP_MSG, cm.MG_EV_CLOSE):
            events.append(ev)
        if ev == cm.MG_EV_CLOSE:
            closed.set()

    _, port = server_factory(handler)
    sock = connect(port)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    sock.shutdown(socket.SHUT_WR)
    read_until_closed(sock, 5)
    sock.close()
    assert closed.wait(10)
    assert cm.MG_EV_HTTP_MSG not in events
