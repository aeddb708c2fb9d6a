"""Hostile WebSocket peers, beyond the malformed frames of ``test_websocket_protocol.py``.

Each bad peer ends with an ``MG_EV_ERROR`` and an error log line (or, for
a bad handshake, an HTTP status), while a client of the same server keeps
being answered.
"""

import struct

import pytest

import cymongoose as cm
from support.hostile import logged, mongoose_errors
from support.loop import wait_until
from support.sockets import connect, read_until_closed, reset
from support.ws import (EchoServer, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RawClient,
                        SyncClient, frame)


@pytest.fixture
def echo(server_factory):
    rec = EchoServer()
    loop, port = server_factory(rec)
    good = SyncClient("ws://127.0.0.1:%d/" % port)
    good.send("hello")
    assert good.recv(timeout=10) == "hello"
    yield rec, loop, port, good
    good.close()


def still_served(good: SyncClient) -> None:
    good.send(b"\x00still")
    assert good.recv(timeout=10) == b"\x00still"


@pytest.mark.parametrize("bad,words", [
    (frame(OP_BINARY, b"abc", mask=False), "unmasked"),
    (frame(OP_TEXT, b"x", rsv=0x10), "reserved bits"),
    (frame(OP_CLOSE, b"\x03\xe8" + b"r" * 124), "control frame"),
    (frame(OP_TEXT, b"a", fin=False) + frame(OP_PING, b"p" * 200), "control frame"),
    (frame(OP_BINARY, b"", length=2**62), "too large"),
], ids=["unmasked", "rsv1", "long close", "long ping mid-fragment", "2^62 bytes"])
def test_bad_frame_is_logged(echo, caplog, bad, words):
    rec, loop, port, good = echo
    with mongoose_errors(caplog):
        raw = RawClient(port)
        try:
            raw.send(bad)
            raw.read_close()
            assert raw.at_eof()
        finally:
            raw.close()
        wait_until(lambda: logged(caplog, words))
    assert len(rec.of(cm.MG_EV_ERROR)) == 1 and words in rec.of(cm.MG_EV_ERROR)[0][1]
    still_served(good)


def test_ping_between_fragments_is_answered_and_message_assembled(echo):
    rec, loop, port, good = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_TEXT, b"hel", fin=False) + frame(OP_PING, b"p1")
                 + frame(OP_CONT, b"lo", fin=False) + frame(OP_CONT, b"!"))
        assert raw.read_frame() == (0x8A, b"p1")
        assert raw.read_frame() == (0x81, b"hello!")
    finally:
        raw.close()
    assert rec.of(cm.MG_EV_ERROR) == []


def test_ten_thousand_one_byte_fragments(echo):
    rec, loop, port, good = echo
    raw = RawClient(port)
    try:
        n = 10_000
        frames = [frame(OP_BINARY, b"a", fin=False)]
        frames += [frame(OP_CONT, bytes([i % 256]), fin=False) for i in range(1, n - 1)]
        frames.append(frame(OP_CONT, b"z"))
        raw.send(b"".join(frames))
        assert raw.read_frame() == (0x82, b"a" + bytes(i % 256 for i in range(1, n - 1)) + b"z")
    finally:
        raw.close()
    still_served(good)


def test_handshake_without_key_gets_426(echo):
    rec, loop, port, good = echo
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 426 ")
    still_served(good)


@pytest.mark.parametrize("cut", [1, 2, 6, 9])
def test_peer_vanishes_mid_frame(echo, cut):
    """A frame cut after ``cut`` bytes, then a reset: CLOSE, no message, no crash."""
    rec, loop, port, good = echo
    raw = RawClient(port)
    raw.send(frame(OP_BINARY, b"x" * 300)[:cut])
    wait_until(lambda: len(rec.of(cm.MG_EV_WS_OPEN)) == 2)
    reset(raw.sock)
    wait_until(lambda: len(rec.of(cm.MG_EV_CLOSE)) == 1)
    assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [(0x81, b"hello")]
    still_served(good)


@pytest.mark.parametrize("head", [b"\xfc\xff\xff\x00\x40\x00\x00\x00\xfc\xfb\x96\x92\x97",
                                  b"\x82\xfe\x01", b"\x82\xff\x00\x00\x00"],
                         ids=["64-bit-length", "16-bit-length", "short"])
def test_masked_frame_header_arriving_in_pieces(echo, head):
    """A masked frame whose header is not complete yet: nothing is read
    before the buffer (bench/fuzz found the word-wise unmasking did; ASan
    runs catch a regression), no message, and the server goes on."""
    rec, loop, port, good = echo
    raw = RawClient(port)
    try:
        raw.send(head)
        wait_until(lambda: len(rec.of(cm.MG_EV_WS_OPEN)) == 2)
        assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [(0x81, b"hello")]
    finally:
        raw.close()
    still_served(good)


def test_close_frame_with_absurd_code_then_garbage(echo):
    rec, loop, port, good = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_CLOSE, struct.pack("!H", 65535)) + b"\xff" * 64)
        assert raw.read_close()[0] == 1002
        assert raw.at_eof()
    finally:
        raw.close()
    still_served(good)
