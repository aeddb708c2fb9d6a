"""The head of a final response, as both servers check it: its status is
200-599 (RFC 9110 section 15: a 1xx sent as the answer would leave the
client waiting for the real one, and reading the next response as this
request's), it carries one Content-Length at most, its header names are
tokens and its values hold no control character but tab (RFC 9110 sections
5.1 and 5.5)."""

import email.utils
import logging
import time
from typing import Any

import pytest

from support.servers import AsgiThread, WsgiThread, raw_exchange


# Content-Length headers the application sends, by path (others: none).
LENGTHS = {"/same": ["4", "4"], "/differ": ["4", "5"]}
# Headers the servers must refuse, and headers they must send, by path.
REFUSED = {
    "/name-space": ("X Bad", "v1"), "/name-colon": ("X:Bad", "v2"), "/name-slash": ("X/B", "v3"),
    "/name-del": ("X\x7fB", "v4"), "/value-ctl": ("X-A", "a\x01b"), "/value-esc": ("X-A", "\x1b[2J"),
    "/value-del": ("X-A", "a\x7fb"),
}
SENT = {"/value-tab": ("X-A", "a\tb"), "/name-tchars": ("X!#$%&'*+.^_`|~-9", "v"),
        "/own-date": ("Date", "Sun, 06 Nov 1994 08:49:37 GMT")}


def extra(path: str) -> Any:
    return [REFUSED.get(path) or SENT[path]] if path in REFUSED or path in SENT else []


def status_of(path: str) -> str:
    """``/404`` and ``/204-cl`` (with ``Content-Length: 4``) ask for a status; others 200."""
    code = path.strip("/").split("-")[0]
    return code if code.isdigit() else "200"


def lengths_of(path: str) -> Any:
    return LENGTHS.get(path, ["4"] if path.endswith("-cl") else [])


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    lengths = lengths_of(path)
    status = status_of(path)
    start_response(status + " Whatever", [("Content-Type", "text/plain")]
                   + [("Content-Length", n) for n in lengths] + extra(path))
    return [b"body"]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    path = scope["path"]
    lengths = lengths_of(path)
    status = int(status_of(path))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]
                + [(b"content-length", n.encode()) for n in lengths]
                + [(n.encode("latin-1"), v.encode("latin-1")) for n, v in extra(path)]})
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


@pytest.mark.parametrize("path", sorted(REFUSED))
def test_a_header_name_that_is_not_a_token_or_a_control_character_is_refused(port, path, caplog):
    with caplog.at_level(logging.ERROR, logger="cymongoose"):
        got = two_requests(port, path.strip("/"))
    name, value = REFUSED[path]
    assert got.startswith(b"HTTP/1.1 500 ")
    assert (name + ": " + value).encode("latin-1").lower() not in got.lower()
    assert got.endswith(b"body") and got.count(b"HTTP/1.1 200 ") == 1
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


@pytest.mark.parametrize("path", sorted(SENT))
def test_a_tab_in_a_value_and_every_token_character_in_a_name_are_sent(port, path):
    got = two_requests(port, path.strip("/"))
    name, value = SENT[path]
    head = got.split(b"\r\n\r\n", 1)[0]
    assert got.startswith(b"HTTP/1.1 200 ")
    assert ("\r\n%s: %s\r\n" % (name, value)).encode("latin-1").lower() in head.lower()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_204_sends_no_content_length_and_a_304_keeps_it(port, method):
    for path, length in (("204-cl", False), ("304-cl", True)):
        got = raw_exchange(port, b"%s /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                           % (method.encode(), path.encode()), lambda d: False)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + path[:3].encode()) and body == b""
        assert (b"content-length: 4" in head.lower()) is length


def dates_of(head: bytes) -> Any:
    return [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"date:")]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_response_has_one_date_of_now_unless_the_application_gives_its_own(port, method):
    """RFC 9110 section 6.6.1: an origin server with a clock sends Date, in
    IMF-fixdate; the server's own is never added to the application's."""
    for path in ("200", "204-cl", "304-cl", "999", "own-date"):
        before = time.time()
        got = raw_exchange(port, b"%s /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                           % (method.encode(), path.encode()), lambda d: False)
        after = time.time()
        dates = dates_of(got.partition(b"\r\n\r\n")[0])
        assert len(dates) == 1, (path, got)
        if path == "own-date":
            assert dates == [SENT["/own-date"][1]]
            continue
        when = email.utils.parsedate_to_datetime(dates[0])
        assert email.utils.format_datetime(when, usegmt=True) == dates[0]  # IMF-fixdate
        assert int(before) <= when.timestamp() <= after + 1


# WSGI header lists that are not lists of (str, str) pairs, by path.
NOT_PAIRS = {
    "/three": [("X-A", "v", "w")], "/one": [("X-A",)], "/int-value": [("X-A", 1)],
    "/bytes-name": [(b"X-A", "v")], "/not-a-tuple": [5], "/string": ["abc"],
    "/nul-name": [("X\0A", "v")], "/lf-value": [("X-A", "a\nb")],
}


def not_pairs_app(environ, start_response):
    path = environ["PATH_INFO"]
    try:
        start_response("200 OK", NOT_PAIRS[path])
    except (TypeError, ValueError) as exc:
        start_response("200 OK", [("X-Refused", type(exc).__name__)])
        return [b"refused"]
    return [b"sent"]


@pytest.mark.parametrize("path", sorted(NOT_PAIRS))
@pytest.mark.parametrize("workers", [0, 2])
def test_start_response_refuses_headers_that_are_not_pairs_of_str(path, workers):
    srv = WsgiThread(not_pairs_app, workers=workers)
    try:
        got = raw_exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                           % path.encode(), lambda d: False)
    finally:
        srv.stop()
    want = b"ValueError" if path in ("/nul-name", "/lf-value") else b"TypeError"
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"refused")
    assert b"X-Refused: " + want in got


# Reason phrases a WSGI application may give, and ones it may not: a CR or
# LF would start a header line of the application's choosing (RFC 9112
# section 4: HTAB, SP, visible characters and obs-text only).
REASONS = {"/tab": "200 Fine\there", "/obs": "200 Tr\xe8s bien", "/crlf": "200 OK\r\nX-Injected: 1",
           "/lf": "200 OK\nX-Injected: 1", "/nul": "200 O\x00K", "/del": "200 O\x7fK",
           "/wide": "200 \u2713"}


def reason_app(environ, start_response):
    start_response(REASONS[environ["PATH_INFO"]], [("Content-Type", "text/plain")])
    return [b"body"]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_wsgi_reason_phrase_with_a_control_character_is_an_application_error(workers, caplog):
    srv = WsgiThread(reason_app, workers=workers)
    try:
        for path in ("/tab", "/obs"):
            got = raw_exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                               % path.encode(), lambda d: False)
            assert got.startswith(("HTTP/1.1 " + REASONS[path]).encode("latin-1") + b"\r\n")
        for path in ("/crlf", "/lf", "/nul", "/del", "/wide"):
            with caplog.at_level(logging.ERROR, logger="cymongoose"):
                got = raw_exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close"
                                   b"\r\n\r\n" % path.encode(), lambda d: False)
            assert got.startswith(b"HTTP/1.1 500 "), path
            assert b"X-Injected" not in got
            assert any(r.exc_info and isinstance(r.exc_info[1], ValueError)
                       for r in caplog.records)
            caplog.clear()
    finally:
        srv.stop()
