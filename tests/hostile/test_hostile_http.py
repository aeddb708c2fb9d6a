"""Hostile HTTP input: only the offending connection ends, with an event or a log line.

Complements ``test_bad_input.py`` (garbage, bad ``Transfer-Encoding``,
negative ``Content-Length``, a bad chunk).  What Mongoose does with each:

* a request it cannot parse (bad request line, header without a colon,
  control bytes, conflicting or malformed ``Content-Length``): Mongoose logs
  ``HTTP parse, <n> bytes``; our listener answers ``400`` with
  ``Connection: close``, logs a warning with the peer's address and fires
  ``MG_EV_ERROR`` (``HTTP request malformed (400)``); the handler never sees
  ``MG_EV_HTTP_MSG`` for it.  After a good pipelined request the garbage
  only ends the connection (the answer to the good one is all it gets);
* a bad chunk size or an unsupported ``Transfer-Encoding``: ``MG_EV_ERROR``
  (``Invalid chunk`` / ``Invalid Transfer-Encoding``), logged, then close.

A keep-alive client stays connected to the same server and is answered
before and after every bad request.
"""

import logging
import socket

import pytest

import cymongoose as cm
from support.hostile import KeepAlive, Recorder, logged, mongoose_errors, served
from support.loop import wait_until
from support.sockets import connect, read_until_closed

CLOSE = b"Connection: close\r\n"

UNPARSABLE = {
    "request line without URI": b"GET\r\n\r\n",
    "HTTP/0.9 request": b"GET /\r\n\r\n",
    "unknown protocol": b"GET / FOO/9\r\n" + CLOSE + b"\r\n",
    "control byte in URI": b"GET /\x01 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nNoColon\r\n" + CLOSE + b"\r\n",
    "space in header name": b"GET / HTTP/1.1\r\nBad Name: v\r\n" + CLOSE + b"\r\n",
    "NUL in header value": b"GET / HTTP/1.1\r\nX: a\x00b\r\n" + CLOSE + b"\r\n",
    "Content-Length and Transfer-Encoding":
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n" + CLOSE
        + b"\r\n0\r\n\r\n",
    "two different Content-Lengths":
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n" + CLOSE + b"\r\nabcde",
    "Content-Length with junk": b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n" + CLOSE + b"\r\nabc",
    # RFC 9112 6.1: a coding other than one final "chunked" cannot be framed.
    "chunked twice":
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n" + CLOSE + b"\r\n0\r\n\r\n",
    "Content-Length beyond 64 bits":
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n" + CLOSE + b"\r\nabc",
}

CHUNKED = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" + CLOSE + b"\r\n"
ERRORS = {
    "chunk size beyond 64 bits": (CHUNKED + b"ffffffffffffffffff\r\nab\r\n0\r\n\r\n",
                                  "Invalid chunk"),
    "negative chunk size": (CHUNKED + b"-1\r\nab\r\n0\r\n\r\n", "Invalid chunk"),
    "chunk without CRLF": (CHUNKED + b"2\r\nabXY0\r\n\r\n", "Invalid chunk"),
}


@pytest.fixture
def server(server_factory):
    rec = Recorder()
    loop, port = server_factory(rec)
    alive = KeepAlive(port)
    assert alive.get() == b"ok /alive"
    yield rec, loop, port, alive
    alive.close()


def bad_request(port: int, data: bytes) -> bytes:
    """Send ``data`` and return what the server sends before it closes."""
    with connect(port) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


@pytest.mark.parametrize("data", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_unparsable_request_gets_400_error_event_and_log(server, caplog, data):
    rec, loop, port, alive = server
    with mongoose_errors(caplog), caplog.at_level(logging.WARNING, logger="cymongoose"):
        raw = bad_request(port, data)
        wait_until(lambda: logged(caplog, "HTTP parse"))
        wait_until(lambda: logged(caplog, "HTTP request malformed (400): peer 127.0.0.1:"))
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in raw
    wait_until(lambda: rec.of(cm.MG_EV_ERROR))
    assert [msg for _, msg in rec.of(cm.MG_EV_ERROR)] == ["HTTP request malformed (400)"]
    assert alive.get() == b"ok /alive"
    assert [uri for _, uri in rec.of(cm.MG_EV_HTTP_MSG)] == ["/alive", "/alive"]
    assert served(port)


@pytest.mark.parametrize("data,words", list(ERRORS.values()), ids=list(ERRORS))
def test_bad_framing_fires_error_event(server, caplog, data, words):
    rec, loop, port, alive = server
    with mongoose_errors(caplog):
        assert bad_request(port, data) == b""
        wait_until(lambda: rec.of(cm.MG_EV_ERROR))
        wait_until(lambda: logged(caplog, words))
    bad_ids = {cid for cid, _ in rec.of(cm.MG_EV_ERROR)}
    assert len(bad_ids) == 1
    wait_until(lambda: bad_ids <= {cid for cid, _ in rec.of(cm.MG_EV_CLOSE)})
    # Once: unpatched Mongoose parses the input again at close (patch 0004).
    assert [msg for _, msg in rec.of(cm.MG_EV_ERROR)] == [words]
    assert alive.get() == b"ok /alive"
    assert served(port)


def test_pipelined_requests_answered_in_order(server):
    rec, loop, port, alive = server
    raw = bad_request(port, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
                            b"GET /c HTTP/1.1\r\n" + CLOSE + b"\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1][:4] for part in raw.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"ok /", b"ok /", b"ok /"]
    assert raw.count(b"ok /a") == raw.count(b"ok /b") == raw.count(b"ok /c") == 1
    assert raw.index(b"ok /a") < raw.index(b"ok /b") < raw.index(b"ok /c")


def test_garbage_after_pipelined_request(server, caplog):
    """The good request before the garbage is answered, then the connection ends."""
    rec, loop, port, alive = server
    with mongoose_errors(caplog):
        raw = bad_request(port, b"GET /a HTTP/1.1\r\n\r\n\x00\x01\x02 junk\r\n\r\n"
                                b"GET /c HTTP/1.1\r\n\r\n")
        wait_until(lambda: logged(caplog, "HTTP parse"))
    assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"ok /a")
    assert alive.get() == b"ok /alive"


@pytest.mark.parametrize("data", [
    b"GET /h HTTP/1.1\r\nX: " + b"a" * 200_000 + b"\r\n" + CLOSE + b"\r\n",
    b"GET /h HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + CLOSE + b"\r\n",
    b"GET /" + b"u" * 100_000 + b" HTTP/1.1\r\n" + CLOSE + b"\r\n",
], ids=["200 KB header", "200 headers", "100 KB URI"])
def test_oversized_head_does_not_disturb_others(server, data):
    """An answer or a close for the offender (limits decide which), never a hang."""
    rec, loop, port, alive = server
    with connect(port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the 200-header request's Connection: close is dropped
        raw = read_until_closed(sock)
    assert raw == b"" or raw.startswith(b"HTTP/1.1 ")
    assert alive.get() == b"ok /alive"
    assert served(port)


def test_body_bytes_at_headers_event_stays_within_received_data(server_factory):
    """At MG_EV_HTTP_HDRS the body has not arrived: ``body_bytes`` holds only what has."""
    seen = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_HDRS:
            seen.append((len(hm.body_bytes), hm.header("Content-Length")))
        elif ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok " + hm.uri)

    loop, port = server_factory(handler)
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n0123456789")
        wait_until(lambda: seen)
        sock.sendall(b"x" * 200_000)
        wait_until(lambda: seen[-1][0] > 10)
    # Each HDRS sees at most what was received, never the declared 2 MB.
    # (Declared bodies above Mongoose's 3 MiB buffer get 413 from the limits.)
    assert all(n <= 200_010 for n, _ in seen), seen
    assert seen[0][0] <= 10 and seen[0][1] == "2000000"
    assert served(port)
