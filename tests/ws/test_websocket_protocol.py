"""Malformed and oversized input: only the offending connection ends.

Each bad frame must end its connection with a CLOSE carrying the RFC 6455
status code, an ``MG_EV_ERROR`` naming the problem, then ``MG_EV_CLOSE``,
while another connection of the same server keeps working.
"""

import struct

import pytest
from websockets.exceptions import ConnectionClosed

import cymongoose as cm
from support.loop import wait_until
from support.ws import (EchoServer, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RawClient,
                        SyncClient, frame)

LIMIT = 3 * 1024 * 1024  # MG_MAX_RECV_SIZE


@pytest.fixture
def echo(server_factory):
    rec = EchoServer()
    loop, port = server_factory(rec)
    return rec, loop, port


BAD_FRAMES = [
    ("reserved bits", frame(OP_TEXT, b"x", rsv=0x40), 1002, "reserved bits"),
    ("unknown opcode", frame(3, b"x"), 1002, "unknown opcode"),
    ("unknown control opcode", frame(11, b""), 1002, "unknown opcode"),
    ("unmasked client frame", frame(OP_TEXT, b"x", mask=False), 1002, "unmasked"),
    ("stray continuation", frame(OP_CONT, b"x"), 1002, "continuation"),
    ("fragmented ping", frame(OP_PING, b"x", fin=False), 1002, "control frame"),
    ("long ping", frame(OP_PING, b"p" * 126), 1002, "control frame"),
    ("new message mid-fragment",
     frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"), 1002, "inside a fragmented"),
    ("invalid UTF-8", frame(OP_TEXT, b"ok \xff"), 1007, "not valid UTF-8"),
    ("surrogate in UTF-8", frame(OP_TEXT, b"\xed\xa0\x80"), 1007, "not valid UTF-8"),
    ("truncated UTF-8", frame(OP_TEXT, b"\xe2\x82"), 1007, "not valid UTF-8"),
    ("invalid UTF-8 across fragments",
     frame(OP_TEXT, b"\xe2", fin=False) + frame(OP_CONT, b"\x28\xa1"), 1007, "not valid UTF-8"),
    ("one-byte close", frame(OP_CLOSE, b"\x03"), 1002, "one-byte close"),
    ("close code 1005", frame(OP_CLOSE, struct.pack("!H", 1005)), 1002, "invalid close code"),
    ("close code 999", frame(OP_CLOSE, struct.pack("!H", 999)), 1002, "invalid close code"),
    ("close reason not UTF-8", frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xc0\xaf"),
     1007, "close reason"),
    ("frame over the limit", frame(OP_BINARY, b"", length=4 * 1024 * 1024), 1009, "too large"),
    ("huge declared length", frame(OP_BINARY, b"", length=2**63), 1009, "too large"),
    ("maximal declared length", frame(OP_BINARY, b"", length=2**64 - 1), 1009, "too large"),
]


@pytest.mark.parametrize("bad,code,words", [b[1:] for b in BAD_FRAMES],
                         ids=[b[0] for b in BAD_FRAMES])
def test_bad_frame_ends_only_that_connection(echo, bad, code, words):
    rec, loop, port = echo
    with SyncClient("ws://127.0.0.1:%d/" % port) as good:
        good.send("before")
        assert good.recv(timeout=10) == "before"
        raw = RawClient(port)
        try:
            # a good frame in the same write is still delivered first
            raw.send(frame(OP_TEXT, b"first") + bad)
            assert raw.read_frame() == (0x81, b"first")
            got_code, _ = raw.read_close()
            assert got_code == code
            assert raw.at_eof()
        finally:
            raw.close()
        good.send("after")
        assert good.recv(timeout=10) == "after"
        wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
        errors = rec.of(cm.MG_EV_ERROR)
        assert len(errors) == 1
        assert errors[0][1].startswith("WebSocket") and words in errors[0][1]
        # ERROR then CLOSE, on the bad connection only
        bad_id = errors[0][0]
        assert [cid for cid, _ in rec.of(cm.MG_EV_CLOSE)] == [bad_id], rec.events
    assert loop.call(lambda: len(loop.mgr.connections)) <= 2


def test_message_just_under_the_limit_passes(echo):
    _, _, port = echo
    payload = b"\x5a" * (LIMIT - 64)
    with SyncClient("ws://127.0.0.1:%d/" % port, max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=30) == payload


def test_oversize_message_from_a_client_library(echo):
    """A real 4 MiB message: the sender sees 1009 and the reason, the
    server an MG_EV_ERROR, and another client is not disturbed."""
    rec, _, port = echo
    url = "ws://127.0.0.1:%d/" % port
    with SyncClient(url) as good:
        good.send("before")
        assert good.recv(timeout=10) == "before"
        with SyncClient(url, max_size=None) as big:
            with pytest.raises(ConnectionClosed) as info:
                big.send(b"\x00" * (4 << 20))  # may already see the CLOSE
                big.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert "too large" in info.value.rcvd.reason
        good.send("after")
        assert good.recv(timeout=10) == "after"
    wait_until(lambda: len(rec.of(cm.MG_EV_CLOSE)) == 2)
    errors = rec.of(cm.MG_EV_ERROR)
    assert len(errors) == 1 and "too large" in errors[0][1]
    assert [d for _, d in rec.of(cm.MG_EV_WS_MSG)] == [(0x81, b"before"), (0x81, b"after")]


def test_fragmented_message_over_the_limit(echo):
    rec, _, port = echo
    half = b"\x01" * (2 * 1024 * 1024)
    raw = RawClient(port)
    try:
        raw.send(frame(OP_BINARY, half, fin=False))
        raw.send(frame(OP_CONT, b"", length=len(half)))  # declared, never sent
        assert raw.read_close()[0] == 1009
        assert raw.at_eof()
    finally:
        raw.close()
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert "too large" in rec.of(cm.MG_EV_ERROR)[0][1]
    assert rec.of(cm.MG_EV_WS_MSG) == []


def test_frames_after_close_are_ignored(echo):
    rec, _, port = echo
    raw = RawClient(port)
    try:
        raw.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + frame(OP_TEXT, b"ignored"))
        assert raw.read_frame() == (0x88, struct.pack("!H", 1000))
        assert raw.at_eof()
    finally:
        raw.close()
    wait_until(lambda: rec.of(cm.MG_EV_CLOSE))
    assert rec.of(cm.MG_EV_WS_MSG) == [] and rec.of(cm.MG_EV_ERROR) == []


def test_byte_by_byte_delivery(echo):
    """Frames split at every byte still parse (headers arrive in pieces)."""
    rec, _, port = echo
    raw = RawClient(port)
    try:
        data = frame(OP_TEXT, "ü".encode() * 70) + frame(OP_BINARY, b"\x00" * 300)
        for i in range(len(data)):
            raw.send(data[i:i + 1])
        assert raw.read_frame() == (0x81, "ü".encode() * 70)
        assert raw.read_frame() == (0x82, b"\x00" * 300)
    finally:
        raw.close()
    assert rec.of(cm.MG_EV_ERROR) == []
