"""Property-based fuzzing with hypothesis: raw bytes thrown at live listeners.

HTTP, WebSocket (after a valid upgrade), ``mqtt_listen`` and ``MqttBroker``
each take arbitrary bytes (and byte strings shaped like their protocol so
the parsers get past the first byte); after every example the server is up
and a well-formed client is served.  The JSON and multipart helpers take
garbage directly.  Examples are bounded so the file runs in seconds.
"""

import json
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cymongoose as cm
from support.hostile import Recorder, served, upgrade
from support.loop import LoopThread, wait_until
from support.mqtt import connect_packet, packet, recv_exact
from support.sockets import connect, reset

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# -- inputs ---------------------------------------------------------------------

TOKENS = [b"GET ", b"POST ", b"/", b" HTTP/1.1", b" HTTP/1.0", b"\r\n", b"\n", b": ",
          b"Content-Length", b"Transfer-Encoding", b"chunked", b"Connection", b"close",
          b"Upgrade", b"websocket", b"0", b"-1", b"ffffffffffffffff", b"\x00", b"%",
          b"\r\n\r\n", b"Host", b"?a=b&c", b" "]
http_like = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)),
                     max_size=40).map(b"".join)


@st.composite
def ws_frames(draw):
    """One or more frames with any header bits, lengths and masks."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        first = draw(st.integers(0, 255))
        payload = draw(st.binary(max_size=200))
        masked = draw(st.booleans())
        length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**64 - 1)))
        if length < 126:
            head = bytes([first, (0x80 if masked else 0) | length])
        elif length < 65536:
            head = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack("!H", length)
        else:
            head = bytes([first, (0x80 if masked else 0) | 127]) + struct.pack("!Q", length)
        out += head + (draw(st.binary(min_size=4, max_size=4)) if masked else b"") + payload
    return out


@st.composite
def mqtt_packets(draw):
    """Packets with any type/flags and a remaining length that may lie."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        body = draw(st.binary(max_size=64))
        if draw(st.booleans()):
            out += packet(draw(st.integers(0, 255)), body)
        else:
            out += bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=5)) + body
    return out


def throw(port: int, data: bytes, how: int) -> None:
    """Send ``data`` and hang up three ways: FIN, RST, or FIN after reading a little."""
    sock = connect(port, timeout=2)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if how == 0:
        sock.close()
    elif how == 1:
        reset(sock)
    else:
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1024)
        except OSError:
            pass
        sock.close()


# -- servers --------------------------------------------------------------------

@pytest.fixture(scope="module")
def http_server():
    mgr = cm.Manager(Recorder())
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    yield loop, port
    loop.stop()
    mgr.close()


class Ponger:
    def __call__(self, conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_MQTT_CMD and data.cmd == 12:  # type: ignore[attr-defined]
            conn.mqtt_pong()


@pytest.fixture(scope="module")
def mqtt_server():
    mgr = cm.Manager()
    port = mgr.mqtt_listen("mqtt://127.0.0.1:0", Ponger()).local_addr[1]
    loop = LoopThread(mgr).start()
    yield loop, port
    loop.stop()
    mgr.close()


@pytest.fixture(scope="module")
def broker():
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    loop = LoopThread(mgr).start()
    yield loop, b.port
    loop.stop()
    mgr.close()


def mqtt_served(port: int, connect_first: bool) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if connect_first:
            sock.sendall(connect_packet("fuzz-check"))
            assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(b"\xc0\x00")
        return recv_exact(sock, 2) == b"\xd0\x00"


def settles(loop: LoopThread, expected: int = 1) -> None:
    wait_until(lambda: loop.call(lambda: loop.mgr.live_handles) == expected)


# -- the properties -------------------------------------------------------------

@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), http_like), how=st.integers(0, 2))
def test_http_listener_survives_any_bytes(http_server, data, how):
    loop, port = http_server
    throw(port, data, how)
    assert served(port)


@FUZZ
@given(data=st.one_of(st.binary(max_size=1024), ws_frames()), how=st.integers(0, 1))
def test_websocket_survives_any_bytes_after_upgrade(http_server, data, how):
    loop, port = http_server
    sock = upgrade(port)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if how:
        reset(sock)
    else:
        sock.close()
    assert served(port)
    good = upgrade(port)
    try:
        key = b"\x01\x02\x03\x04"
        good.sendall(bytes([0x82, 0x84]) + key + bytes(b ^ k for b, k in zip(b"ping", key)))
        assert recv_exact(good, 6) == b"\x82\x04ping"
    finally:
        good.close()


@FUZZ
@given(data=st.one_of(st.binary(max_size=1024), mqtt_packets()), how=st.integers(0, 1),
       connected=st.booleans())
def test_mqtt_listener_survives_any_bytes(mqtt_server, data, how, connected):
    loop, port = mqtt_server
    prefix = connect_packet("fuzz") if connected else b""
    throw(port, prefix + data, how)
    assert mqtt_served(port, connect_first=False)


@FUZZ
@given(data=st.one_of(st.binary(max_size=1024), mqtt_packets()), how=st.integers(0, 1),
       connected=st.booleans())
def test_mqtt_broker_survives_any_bytes(broker, data, how, connected):
    loop, port = broker
    prefix = connect_packet("fuzz") if connected else b""
    throw(port, prefix + data, how)
    assert mqtt_served(port, connect_first=True)


def test_servers_hold_no_stale_connections(http_server, mqtt_server, broker):
    """Runs after the fuzzing above (file order): every fuzz peer is gone."""
    for loop, _ in (http_server, mqtt_server, broker):
        settles(loop)


# -- helpers that parse ---------------------------------------------------------

json_paths = st.one_of(st.sampled_from(["$", "$.a", "$.a.b", "$[0]", "$.a[1].b", "$..", "$["]),
                       st.text(max_size=12).map(lambda s: "$" + s))
json_docs = st.one_of(st.binary(max_size=256), st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=10).map(lambda v: json.dumps(v).encode()))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(doc=json_docs, path=json_paths)
def test_json_helpers_take_garbage(doc, path):
    raw = cm.json_get(doc, path)
    assert raw is None or isinstance(raw, str)
    assert cm.json_get_num(doc, path) is None or isinstance(cm.json_get_num(doc, path), float)
    assert cm.json_get_bool(doc, path) in (None, True, False)
    assert isinstance(cm.json_get_long(doc, path, 7), int)
    s = cm.json_get_str(doc, path)
    assert s is None or isinstance(s, str)


multipart_like = st.lists(st.one_of(
    st.sampled_from([b"--xyz", b"--xyz--", b"\r\n", b"\r\n\r\n",
                     b'Content-Disposition: form-data; name="f"; filename="a.txt"',
                     b"Content-Type: text/plain", b"--", b"\n"]),
    st.binary(max_size=16)), max_size=20).map(b"".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(body=st.one_of(st.binary(max_size=512), multipart_like), offset=st.integers(0, 600))
def test_multipart_parser_takes_garbage(body, offset):
    seen = 0
    while True:
        nxt, part = cm.http_parse_multipart(body, offset)
        if part is None:
            assert nxt == 0
            break
        assert offset < nxt <= len(body)
        assert set(part) == {"name", "filename", "body"}
        assert isinstance(part["body"], bytes) and len(part["body"]) <= len(body)
        offset = nxt
        seen += 1
        assert seen <= len(body)
