"""Hostile MQTT peers on ``mqtt_listen`` and ``MqttBroker``, beyond ``test_mqtt_broker.py``.

A malformed packet ends its connection with ``MG_EV_ERROR("MQTT malformed
packet")`` and an error log line; a truncated packet followed by a hang-up
ends it without a command; another client is answered throughout.
"""

import socket

import pytest

import cymongoose as cm
from support.hostile import Recorder, logged, mongoose_errors
from support.loop import LoopThread, wait_until
from support.mqtt import (CONNACK5, closed_by_peer, connect_packet, mqtt_string, packet,
                          raw_client, recv_exact)
from support.sockets import read_until_closed

PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


class PingServer(Recorder):
    """A bare ``mqtt_listen`` handler that answers PINGREQ and records commands."""

    def __call__(self, conn: cm.Connection, ev: int, data: object) -> None:
        super().__call__(conn, ev, data)
        if ev == cm.MG_EV_MQTT_CMD and data.cmd == 12:  # type: ignore[attr-defined]
            conn.mqtt_pong()


@pytest.fixture
def bare():
    rec = PingServer()
    mgr = cm.Manager()
    port = mgr.mqtt_listen("mqtt://127.0.0.1:0", rec).local_addr[1]
    loop = LoopThread(mgr).start()
    good = socket.create_connection(("127.0.0.1", port), timeout=5)
    yield rec, loop, port, good
    good.close()
    loop.stop()
    mgr.close()


@pytest.fixture
def broker():
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    loop = LoopThread(mgr).start()
    good = raw_client(b.port, "good")
    yield b, loop, good
    good.close()
    loop.stop()
    mgr.close()


def pings(sock: socket.socket) -> None:
    sock.sendall(PINGREQ)
    assert recv_exact(sock, 2) == PINGRESP


MALFORMED = {
    "remaining length of five bytes": b"\x30\x80\x80\x80\x80\x01",
    "remaining length continuation then garbage": b"\x82\xff\xff\xff\xff\xff\xff",
    "publish topic longer than the packet": packet(0x30, b"\x00\x40ab"),
    "publish QoS 3": packet(0x36, mqtt_string("t") + b"\x00\x01x"),
}


@pytest.mark.parametrize("bad", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_packet_on_bare_listener(bare, caplog, bad):
    rec, loop, port, good = bare
    pings(good)
    with mongoose_errors(caplog):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(bad)
            assert closed_by_peer(sock)
        wait_until(lambda: logged(caplog, "MQTT malformed packet"))
    assert [d for _, d in rec.of(cm.MG_EV_ERROR)] == ["MQTT malformed packet"]
    pings(good)


@pytest.mark.parametrize("cut", [1, 2, 5, 12])
def test_truncated_packet_then_hang_up(bare, cut):
    rec, loop, port, good = bare
    whole = packet(0x30, mqtt_string("topic") + b"payload")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(whole[:cut])
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == b""
    wait_until(lambda: len(rec.of(cm.MG_EV_CLOSE)) == 1)
    assert rec.of(cm.MG_EV_MQTT_CMD) == []
    pings(good)


def test_huge_declared_length_is_cut_at_the_receive_limit(bare):
    """A PUBLISH declaring 256 MB: Mongoose buffers up to its 3 MiB cap, then drops it."""
    rec, loop, port, good = bare
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x30\xff\xff\xff\x7f" + mqtt_string("t"))
        chunk = b"\x00" * 65536
        try:
            for _ in range(128):  # 8 MiB at most
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_peer(sock, timeout=10)
    pings(good)


@pytest.mark.parametrize("first", [
    packet(0x82, b"\x00\x01" + mqtt_string("t") + b"\x00"),  # SUBSCRIBE
    PINGREQ,
    b"\xe0\x00",  # DISCONNECT
    packet(0x40, b"\x00\x01"),  # PUBACK
], ids=["subscribe", "pingreq", "disconnect", "puback"])
def test_broker_refuses_packets_before_connect(broker, first):
    b, loop, good = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(first)
        assert closed_by_peer(sock)
    pings(good)
    assert loop.call(lambda: b.clients) == ("good",)


@pytest.mark.parametrize("bad", [
    b"\xc1\x00",  # PINGREQ with flags 1
    b"\xe2\x00",  # DISCONNECT with flags 2
    packet(0x60, b"\x00\x01"),  # PUBREL with flags 0 (must be 2)
    packet(0x42, b"\x00\x01"),  # PUBACK with flags 2 (the C engine's packet)
    packet(0x51, b"\x00\x01"),  # PUBREC with flags 1
    packet(0x74, b"\x00\x01"),  # PUBCOMP with flags 4
    packet(0x38, mqtt_string("t") + b"x"),  # DUP on a QoS 0 PUBLISH (MQTT-3.3.1-2)
    packet(0x32, mqtt_string("t") + b"\x00\x00x"),  # QoS 1 PUBLISH with identifier 0
    packet(0x34, mqtt_string("t") + b"\x00\x00x"),  # QoS 2 PUBLISH with identifier 0
    packet(0x82, b"\x00\x00" + mqtt_string("t") + b"\x00"),  # SUBSCRIBE with identifier 0
    packet(0xA2, b"\x00\x00" + mqtt_string("t")),  # UNSUBSCRIBE with identifier 0
    b"\xc0\x01x",  # PINGREQ with a body (section 3.12)
], ids=["pingreq", "disconnect", "pubrel", "puback", "pubrec", "pubcomp", "qos0-dup",
        "qos1-id0", "qos2-id0", "subscribe-id0", "unsubscribe-id0", "pingreq-body"])
def test_broker_closes_on_a_malformed_packet_mongoose_parsed(broker, caplog, bad):
    """MQTT 3.1.1: reserved flags must be as the table of section 2.2.2 gives
    them (MQTT-2.2.2-2), a QoS 0 PUBLISH has no DUP (MQTT-3.3.1-2), SUBSCRIBE,
    UNSUBSCRIBE and a QoS 1 or 2 PUBLISH carry a packet identifier other
    than 0 (MQTT-2.3.1-1), a PINGREQ has no body; a receiver that finds
    otherwise must close the connection."""
    b, loop, good = broker
    with raw_client(b.port, "flags") as sock:
        sock.sendall(bad)
        assert closed_by_peer(sock)
    assert any("malformed packet" in r.getMessage() for r in caplog.records)
    pings(good)
    # The same packets with the flags they require are taken as ever.
    with raw_client(b.port, "flags") as sock:
        sock.sendall(packet(0x62, b"\x00\x01"))  # PUBREL, flags 2
        assert recv_exact(sock, 4) == b"\x70\x02\x00\x01"  # its PUBCOMP
        pings(sock)


@pytest.mark.parametrize("bad", [
    packet(0x32, mqtt_string("t") + b"\x00\x00x"),  # identifier 0
    packet(0x38, mqtt_string("t") + b"x"),  # DUP at QoS 0
], ids=["qos1-id0", "qos0-dup"])
def test_a_malformed_publish_on_a_cached_route_closes_and_is_not_delivered(broker, bad):
    """The C engine, which takes PUBLISHes on routes it holds, leaves these to
    Python, which closes the connection."""
    b, loop, good = broker
    good.sendall(packet(0x82, b"\x00\x01" + mqtt_string("t") + b"\x01"))
    assert recv_exact(good, 5) == b"\x90\x03\x00\x01\x01"
    with raw_client(b.port, "pub") as sock:
        for pid in (1, 2):  # the first routes through Python, which leaves the route in C
            sock.sendall(packet(0x32, mqtt_string("t") + bytes([0, pid]) + b"ok"))
            assert recv_exact(sock, 4) == b"\x40\x02\x00" + bytes([pid])
            got = recv_exact(good, 9)
            assert got[0] & 0xF6 == 0x32 and got[-2:] == b"ok"
            good.sendall(b"\x40\x02" + got[5:7])  # PUBACK
        sock.sendall(bad)
        assert closed_by_peer(sock)
    pings(good)  # nothing was delivered before the PINGRESP


@pytest.mark.parametrize("options, closes", [(0x31, True), (0x21, False)],
                         ids=["retain-handling-3", "retain-handling-2"])
def test_mqtt5_subscribe_with_retain_handling_3_closes(broker, caplog, options, closes):
    """MQTT 5 section 3.8.3.1: a Retain Handling of 3 is a protocol error."""
    b, loop, good = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x00\x00"
                            + mqtt_string("rh")))
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sock.sendall(packet(0x82, b"\x00\x01\x00" + mqtt_string("t") + bytes([options])))
        if closes:
            assert closed_by_peer(sock)
            assert any("bad subscription options" in r.getMessage() for r in caplog.records)
        else:
            assert recv_exact(sock, 6) == b"\x90\x04\x00\x01\x00\x01"
    pings(good)


def connect5(props: bytes = b"", client_id: str = "m5") -> bytes:
    return packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x3c" + bytes([len(props)]) + props
                  + mqtt_string(client_id))


@pytest.mark.parametrize("props", [
    b"\x21\x00\x00",  # Receive Maximum 0
    b"\x27\x00\x00\x00\x00",  # Maximum Packet Size 0
    b"\x17\x02",  # Request Problem Information 2
    b"\x19\x02",  # Request Response Information 2
    b"\x11\x00\x00\x00\x05\x11\x00\x00\x00\x05",  # Session Expiry Interval twice
], ids=["receive-max-0", "max-packet-0", "problem-info-2", "response-info-2", "expiry-twice"])
def test_mqtt5_connect_with_a_protocol_error_in_its_properties_closes(broker, props):
    """MQTT 5 section 3.1.2.11: each of these is a protocol error."""
    b, loop, good = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5(props))
        assert closed_by_peer(sock)
    pings(good)
    # User Property may be given more than once.
    user = b"\x26" + mqtt_string("k") + mqtt_string("v")
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5(user + user + b"\x21\x00\x01"))
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5


@pytest.mark.parametrize("bad", [
    packet(0x30, mqtt_string("t") + b"\x03\x23\x00\x01" + b"x"),  # Topic Alias 1
    packet(0x30, mqtt_string("t") + b"\x03\x23\x00\x00" + b"x"),  # Topic Alias 0
    packet(0x32, mqtt_string("t") + b"\x00\x01\x02\x0b\x01" + b"x"),  # Subscription Identifier
    packet(0x82, b"\x00\x01\x02\x0b\x01" + mqtt_string("t") + b"\x00"),  # the same, SUBSCRIBE
    packet(0x82, b"\x00\x01\x02\x0b\x00" + mqtt_string("t") + b"\x00"),  # identifier 0
    packet(0xF0, b"\x00\x00"),  # AUTH, with no Authentication Method in CONNECT
], ids=["publish-alias", "publish-alias-0", "publish-subscription-id", "subscribe-id",
        "subscribe-id-0", "auth"])
def test_mqtt5_what_the_connack_rules_out_closes(broker, caplog, bad):
    """The CONNACK gives no Topic Alias Maximum (no aliases) and says
    Subscription Identifiers Available 0 (MQTT 5 sections 3.2.2.3.8 and
    3.2.2.3.12); a client never sends a PUBLISH with a Subscription
    Identifier, nor AUTH without having asked for an authentication method."""
    b, loop, good = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5())
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sock.sendall(bad)
        assert closed_by_peer(sock)
    pings(good)


def test_broker_survives_a_connect_flood_of_garbage(broker):
    b, loop, good = broker
    for i in range(50):
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
            sock.sendall(connect_packet("c%d" % i)[: 3 + i % 10] + bytes([i]) * 7)
    pings(good)
    wait_until(lambda: loop.call(lambda: loop.mgr.live_handles) == 2)
