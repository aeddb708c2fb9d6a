"""The ASGI server checks a WebSocket opening handshake as RFC 6455
section 4.2.1 asks: one that breaks it is answered 400 (426 for another
protocol version), never upgraded and never handed to the application as
plain HTTP.  And the application's ``websocket.accept`` as section 4.2.2
asks: a subprotocol the client did not offer, a header the server writes
itself, or a bad header raise in the application, and nothing is upgraded."""

import logging
from typing import Any, List

import pytest

from support.servers import AsgiThread, WsgiThread, raw_exchange

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
VERSION = b"Sec-WebSocket-Version: 13\r\n"
UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"


def handshake(start: bytes = b"GET / HTTP/1.1", upgrade: bytes = UPGRADE, key: bytes = KEY,
              version: bytes = VERSION) -> bytes:
    return start + b"\r\nHost: x\r\n" + upgrade + key + version + b"\r\n"


@pytest.fixture
def server():
    """(port, scopes): an ASGI app that accepts every WebSocket and answers
    every HTTP request; ``scopes`` records the type of each scope it saw."""
    scopes: List[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        scopes.append(scope["type"])
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http"})

    srv = AsgiThread(app)
    try:
        yield srv.port, scopes
    finally:
        srv.stop()


def answer(port: int, request: bytes) -> bytes:
    """The head of the answer to ``request`` (read until the head ends or the peer closes)."""
    return raw_exchange(port, request, lambda d: b"\r\n\r\n" in d).split(b"\r\n\r\n")[0]


def test_a_valid_handshake_is_upgraded(server):
    port, scopes = server
    head = answer(port, handshake(upgrade=b"Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"))
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert scopes == ["websocket"]


@pytest.mark.parametrize("request_bytes", [
    handshake(start=b"POST / HTTP/1.1"),
    handshake(start=b"GET / HTTP/1.0"),
    handshake(upgrade=b"Upgrade: websocket\r\n"),
    handshake(upgrade=b"Upgrade: websocket\r\nConnection: keep-alive\r\n"),
    handshake(key=b""),
    handshake(key=b"Sec-WebSocket-Key: c2hvcnQ=\r\n"),
    handshake(key=b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=!\r\n"),
], ids=["post", "http-1.0", "no-connection", "connection-without-upgrade", "no-key",
        "short-key", "key-not-base64"])
def test_a_broken_handshake_is_answered_400(server, request_bytes):
    port, scopes = server
    head = answer(port, request_bytes)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in head
    assert scopes == []


@pytest.mark.parametrize("version", [b"Sec-WebSocket-Version: 8\r\n", b""], ids=["8", "none"])
def test_another_protocol_version_is_answered_426_naming_13(server, version):
    port, scopes = server
    head = answer(port, handshake(version=version))
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13" in head
    assert scopes == []


def test_the_wsgi_server_serves_an_upgrade_request_as_plain_http():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ.get("HTTP_UPGRADE", "").encode()]

    srv = WsgiThread(app)
    try:
        got = raw_exchange(srv.port, handshake(key=b"", version=b""),
                           lambda d: d.endswith(b"websocket"))
    finally:
        srv.stop()
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"websocket")


# websocket.accept messages the application sends, by path.
ACCEPTS = {
    "/chat": {"type": "websocket.accept", "subprotocol": "chat"},
    "/x-ok": {"type": "websocket.accept", "headers": [(b"x-ok", b"a\tb")]},
    "/none": {"type": "websocket.accept", "subprotocol": None},
    "/other": {"type": "websocket.accept", "subprotocol": "other"},
    "/forged": {"type": "websocket.accept", "headers": [(b"Sec-WebSocket-Accept", b"forged")]},
    "/protocol": {"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"chat")]},
    "/extension": {"type": "websocket.accept",
                   "headers": [(b"sec-websocket-extensions", b"permessage-deflate")]},
    "/name": {"type": "websocket.accept", "headers": [(b"x bad", b"v")]},
    "/value": {"type": "websocket.accept", "headers": [(b"x-a", b"a\x01b")]},
}


@pytest.fixture
def accepting():
    """(port, errors): an ASGI app that accepts each WebSocket with the
    message ACCEPTS names for its path; ``errors`` records what ``send`` raised."""
    errors: List[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        try:
            await send(ACCEPTS[scope["path"]])
        except (ValueError, TypeError) as exc:
            errors.append(exc)
            raise
        await send({"type": "websocket.close"})

    srv = AsgiThread(app)
    try:
        yield srv.port, errors
    finally:
        srv.stop()


def test_a_subprotocol_and_headers_the_client_may_get_are_sent(accepting):
    port, errors = accepting
    offer = VERSION + b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    head = answer(port, handshake(b"GET /chat HTTP/1.1", version=offer))
    assert head.startswith(b"HTTP/1.1 101 ") and b"\r\nSec-WebSocket-Protocol: chat" in head
    head = answer(port, handshake(b"GET /x-ok HTTP/1.1"))
    assert head.startswith(b"HTTP/1.1 101 ") and b"\r\nx-ok: a\tb" in head
    head = answer(port, handshake(b"GET /none HTTP/1.1", version=offer))
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol" not in head
    assert errors == []


@pytest.mark.parametrize("path", ["/other", "/forged", "/protocol", "/extension", "/name",
                                  "/value"])
def test_an_accept_that_would_break_the_handshake_raises_in_the_app(accepting, path, caplog):
    port, errors = accepting
    offer = VERSION + b"Sec-WebSocket-Protocol: chat\r\n"
    with caplog.at_level(logging.ERROR, logger="cymongoose"):
        head = answer(port, handshake(b"GET " + path.encode() + b" HTTP/1.1", version=offer))
    assert head.startswith(b"HTTP/1.1 500 ")
    assert b"forged" not in head and b"other" not in head and b"x bad" not in head
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
