"""Our MqttBroker (and the bare mqtt_listen parser) with paho-mqtt and raw peers."""

import socket

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import cymongoose as cm
from cymongoose.broker import topic_matches, valid_filter
from support.fixtures import made
from support.hostile import logged, mongoose_errors
from support.loop import LoopThread, wait_until
from support.mqtt import (CONNACK5, Client, Paho, closed_by_peer, connect_packet, mqtt_string, packet,
                          raw_client, recv_exact)


@pytest.fixture
def broker():
    """An MqttBroker on a free port, polled on a thread: (broker, loop)."""
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    loop = LoopThread(mgr).start()
    yield b, loop
    loop.stop()
    mgr.close()


@pytest.fixture
def peer(broker):
    yield from made(lambda **kwargs: Paho(broker[0].port, **kwargs), Paho.stop)


@pytest.fixture
def client(broker):
    url = "mqtt://127.0.0.1:%d" % broker[0].port
    yield from made(lambda **kwargs: Client(url, **kwargs), Client.close)


def received(p):
    return [(m.topic, m.payload, m.qos, bool(m.retain)) for m in p.messages]


def test_two_paho_clients_with_wildcards_and_qos1(peer):
    a = peer(client_id="a")
    a.sub("home/+/temp", 1)
    a.sub("alerts/#", 1)
    a.sub("done", 1)
    b = peer(client_id="b")
    b.sub("home/#", 0)
    # paho's publish completes only when our broker's PUBACK arrives
    b.pub("home/kitchen/temp", b"21", 1)
    b.pub("home/kitchen/humidity", b"40", 1)
    b.pub("home/kitchen/temp/extra", b"no", 1)
    b.pub("alerts", b"a0", 1)
    b.pub("alerts/fire/now", b"a1", 1)
    b.pub("done", b"", 1)
    wait_until(lambda: a.payloads("done"))
    assert received(a) == [
        ("home/kitchen/temp", b"21", 1, False),
        ("alerts", b"a0", 1, False),
        ("alerts/fire/now", b"a1", 1, False),
        ("done", b"", 1, False),
    ]
    # b subscribed at QoS 0: its copies come down at 0
    wait_until(lambda: len(b.messages) == 3)
    assert received(b) == [
        ("home/kitchen/temp", b"21", 0, False),
        ("home/kitchen/humidity", b"40", 0, False),
        ("home/kitchen/temp/extra", b"no", 0, False),
    ]


def test_a_message_is_delivered_once_for_overlapping_subscriptions(peer):
    a = peer()
    a.sub("x/#", 0)
    a.sub("x/+", 1)
    b = peer()
    b.pub("x/y", b"once", 1)
    b.pub("x/z", b"marker", 1)
    wait_until(lambda: a.payloads("x/z"))
    assert received(a) == [("x/y", b"once", 1, False), ("x/z", b"marker", 1, False)]


def test_retained_message_delivered_replaced_and_cleared(broker, peer):
    b, loop = broker
    pub = peer()
    pub.pub("state/door", b"open", 1, retain=True)
    late = peer()
    late.sub("state/+", 1)
    wait_until(lambda: late.messages)
    assert received(late) == [("state/door", b"open", 1, True)]
    pub.pub("state/door", b"closed", 0, retain=True)
    # live subscribers get it with the retain flag off
    wait_until(lambda: len(late.messages) == 2)
    assert received(late)[1] == ("state/door", b"closed", 0, False)
    later = peer()
    later.sub("state/door", 1)
    wait_until(lambda: later.messages)
    assert received(later) == [("state/door", b"closed", 0, True)]
    pub.pub("state/door", b"", 1, retain=True)  # clears it
    assert loop.call(lambda: b.retained) == {}
    last = peer()
    last.sub("state/#", 1)
    last.sub("marker", 1)
    pub.pub("marker", b"m", 1)
    wait_until(lambda: last.messages)
    assert received(last) == [("marker", b"m", 1, False)]


def test_our_client_through_our_broker_at_qos2(client, peer):
    other = peer()
    other.sub("q2/#", 2)
    c = client().wait_open()
    c.sub("q2/back", 2)
    pid = c.pub("q2/out", b"two", 2)
    wait_until(lambda: c.has_cmd(7, pid))  # PUBREC, PUBREL, PUBCOMP done
    other.pub("q2/back", b"reply", 2)
    wait_until(lambda: c.messages and other.messages)
    assert received(other)[0] == ("q2/out", b"two", 2, False)
    assert (c.messages[0].topic, c.messages[0].data, c.messages[0].qos) == ("q2/back", b"reply", 2)


def test_will_published_on_abrupt_close_and_not_after_disconnect(client, peer):
    watcher = peer()
    watcher.sub("wills/#", 1)
    dying = client(client_id="dying", will_topic="wills/dying", will_message=b"bye",
                   will_qos=1).wait_open()
    dying.call(dying.conn.close)
    wait_until(lambda: watcher.messages)
    assert received(watcher) == [("wills/dying", b"bye", 1, False)]
    polite = client(client_id="polite", will_topic="wills/polite", will_message=b"no",
                    will_retain=True).wait_open()
    polite.call(polite.conn.mqtt_disconnect)
    assert polite.closed.wait(5)  # the broker closes on DISCONNECT
    watcher.pub("wills/marker", b"m", 1)
    wait_until(lambda: len(watcher.messages) == 2)
    assert received(watcher)[1] == ("wills/marker", b"m", 1, False)


def test_pingreq_answered(broker):
    sock = raw_client(broker[0].port)
    try:
        for _ in range(3):
            sock.sendall(b"\xc0\x00")
            assert recv_exact(sock, 2) == b"\xd0\x00"
    finally:
        sock.close()


def test_silent_client_dropped_after_keepalive(broker):
    b, loop = broker
    sock = raw_client(b.port, "sleepy", keepalive=1)
    try:
        assert loop.call(lambda: b.clients) == ("sleepy",)
        assert closed_by_peer(sock, 5)  # dropped after 1.5 s of silence
        wait_until(lambda: loop.call(lambda: b.clients) == ())
    finally:
        sock.close()


def test_subscribe_with_invalid_filter_gets_failure_code(broker):
    sock = raw_client(broker[0].port)
    try:
        body = b"\x00\x07" + mqtt_string("ok/+") + b"\x01" + mqtt_string("bad/#/x") + b"\x00"
        sock.sendall(packet(0x82, body))
        assert recv_exact(sock, 6) == b"\x90\x04\x00\x07\x01\x80"
        sock.sendall(packet(0xA2, b"\x00\x08" + mqtt_string("ok/+")))
        assert recv_exact(sock, 4) == b"\xb0\x02\x00\x08"
    finally:
        sock.close()


def test_same_client_id_replaces_the_old_connection(broker):
    b, loop = broker
    first = raw_client(b.port, "twin")
    second = raw_client(b.port, "twin")
    try:
        assert closed_by_peer(first)
        second.sendall(b"\xc0\x00")
        assert recv_exact(second, 2) == b"\xd0\x00"
        assert loop.call(lambda: b.clients) == ("twin",)
    finally:
        first.close()
        second.close()


def test_mqtt5_clients_are_served(broker, peer, client):
    """paho and our client speak MQTT 5 to the broker, with our client's CONNECT properties."""
    from cymongoose.mqtt import MQTT_PROP_SESSION_EXPIRY_INTERVAL, MQTT_PROP_USER_PROPERTY
    p = peer(protocol=paho.MQTTv5, client_id="p5")
    p.sub("v5/#", 1)
    ours = client(client_id="ours5", version=5, properties=[
        (MQTT_PROP_SESSION_EXPIRY_INTERVAL, 60), (MQTT_PROP_USER_PROPERTY, ("k", "v"))]
    ).wait_open()
    assert ours.connack_packet == CONNACK5
    ours.sub("v5/#", 2)
    ours.pub("v5/a", b"from ours", 1)
    p.pub("v5/b", b"from paho", 2)
    wait_until(lambda: len(p.messages) == 2 and len(ours.messages) == 2)
    assert sorted(p.payloads()) == [b"from ours", b"from paho"]
    assert sorted(m.data for m in ours.messages) == [b"from ours", b"from paho"]
    assert broker[1].call(lambda: "ours5" in broker[0].sessions)


def test_mqtt31_clients_are_served(broker, peer):
    """MQTT 3.1 ("MQIsdp", level 3), which older devices speak: paho's
    MQTTv31 client subscribes, publishes and receives at each QoS, with a
    3.1.1 client on the same topics."""
    old = peer(protocol=paho.MQTTv31, client_id="v31")
    new = peer(client_id="v311")
    old.sub("mixed/#", 2)
    new.sub("mixed/#", 2)
    for qos in (0, 1, 2):
        old.pub("mixed/old", b"from 3.1 at %d" % qos, qos)
        new.pub("mixed/new", b"from 3.1.1 at %d" % qos, qos)
    wait_until(lambda: len(old.messages) == 6 and len(new.messages) == 6)
    assert sorted(old.payloads()) == sorted(new.payloads())
    assert set(m.qos for m in old.messages) == {0, 1, 2}


def test_mqtt31_connack_has_no_session_flag_and_an_id_is_required(broker):
    """MQTT 3.1's CONNACK has no session-present flag (its byte is reserved),
    and a client id is required (1 to 23 characters in the 3.1 text; longer
    ones are taken, as mosquitto takes them)."""
    def connect31(client_id: str, flags: int) -> bytes:
        return packet(0x10, mqtt_string("MQIsdp") + bytes([3, flags, 0, 60])
                      + mqtt_string(client_id))

    for flags in (0x00, 0x00):  # a kept session: the second connection finds it
        with socket.create_connection(("127.0.0.1", broker[0].port), timeout=5) as sock:
            sock.sendall(connect31("a-3.1-client-with-a-long-id", flags))
            assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            assert closed_by_peer(sock)
    with socket.create_connection(("127.0.0.1", broker[0].port), timeout=5) as sock:
        sock.sendall(connect31("", 0x02))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x02"  # identifier rejected
        assert closed_by_peer(sock)


def test_unknown_protocol_level_is_refused(broker):
    sock = socket.create_connection(("127.0.0.1", broker[0].port), timeout=5)
    try:
        sock.sendall(connect_packet("old", level=3))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x01"
        assert closed_by_peer(sock)
    finally:
        sock.close()


BAD_PACKETS = {
    "remaining length over 4 bytes": b"\x30\xff\xff\xff\xff\x01",
    "publish at QoS 3": packet(0x36, mqtt_string("t") + b"\x00\x01x"),
    "subscribe filter past the end": packet(0x82, b"\x00\x01\x00\x09ab"),
    "subscribe with reserved flags": packet(0x80, b"\x00\x01" + mqtt_string("t") + b"\x00"),
    "subscribe asking QoS 3": packet(0x82, b"\x00\x01" + mqtt_string("t") + b"\x03"),
    "subscribe without filters": packet(0x82, b"\x00\x01"),
    "wildcard in publish topic": packet(0x30, mqtt_string("a/+") + b"x"),
    "packet type 0": b"\x00\x00",
    "server-only packet": b"\xd0\x00",
    "second CONNECT": connect_packet("again"),
}


@pytest.mark.parametrize("bad", sorted(BAD_PACKETS))
def test_malformed_packet_closes_only_that_client(broker, peer, caplog, bad):
    b, loop = broker
    good = peer(client_id="good")
    good.sub("alive", 1)
    sock = raw_client(b.port, "evil")
    try:
        with mongoose_errors(caplog):
            sock.sendall(BAD_PACKETS[bad])
            assert closed_by_peer(sock)
            # the connection ended through MG_EV_ERROR, which Mongoose logs
            wait_until(lambda: logged(caplog, "MQTT malformed packet")
                       or logged(caplog, "MQTT protocol error"))
    finally:
        sock.close()
    wait_until(lambda: loop.call(lambda: b.clients) == ("good",))
    good.pub("alive", b"yes", 1)
    wait_until(lambda: good.messages)


@pytest.mark.parametrize("bad", [
    packet(0x30, mqtt_string("t") + b"x"),  # PUBLISH before CONNECT
    connect_packet("x", flags=0x03),  # reserved CONNECT flag set
    packet(0x10, b"\x00\x04MQ"),  # CONNECT cut short
])
def test_bad_first_packet_is_refused(broker, bad):
    sock = socket.create_connection(("127.0.0.1", broker[0].port), timeout=5)
    try:
        sock.sendall(bad)
        assert closed_by_peer(sock)
    finally:
        sock.close()


def test_listen_parser_reports_malformed_packet_as_error():
    """Without the broker: a bare mqtt_listen handler sees MG_EV_ERROR, then CLOSE."""
    mgr = cm.Manager()
    seen = []

    def handler(conn, ev, data):
        if ev in (cm.MG_EV_ERROR, cm.MG_EV_CLOSE):
            seen.append((conn.userdata, ev, data))
        elif ev == cm.MG_EV_MQTT_CMD:
            conn.userdata = data.cmd
            if data.cmd == 12:
                conn.mqtt_pong()

    port = mgr.mqtt_listen("mqtt://127.0.0.1:0", handler).local_addr[1]
    loop = LoopThread(mgr).start()
    good = socket.create_connection(("127.0.0.1", port), timeout=5)
    bad = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        good.sendall(b"\xc0\x00")
        assert recv_exact(good, 2) == b"\xd0\x00"
        bad.sendall(b"\xc0\x00" + b"\x30\xff\xff\xff\xff\x01")
        assert closed_by_peer(bad)
        wait_until(lambda: len(seen) == 2)
        assert seen == [(12, cm.MG_EV_ERROR, "MQTT malformed packet"), (12, cm.MG_EV_CLOSE, None)]
        good.sendall(b"\xc0\x00")
        assert recv_exact(good, 2) == b"\xd0\x00"
    finally:
        good.close()
        bad.close()
        loop.stop()
        mgr.close()


def test_broker_close_disconnects_everyone():
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    loop = LoopThread(mgr).start()
    try:
        port = b.port
        connected = raw_client(port, "c1")
        pending = socket.create_connection(("127.0.0.1", port), timeout=5)
        wait_until(lambda: len(loop.call(lambda: mgr.connections)) == 3)
        loop.call(b.close)
        assert closed_by_peer(connected) and closed_by_peer(pending)
        assert loop.call(lambda: b.port) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        loop.stop()
        mgr.close()


@pytest.mark.parametrize("topic_filter,topic,match", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True),
    ("a/+", "a/b/c", False), ("a/#", "a", True), ("a/#", "a/b/c", True),
    ("#", "a/b", True), ("+/+", "/x", True), ("+", "a/b", False),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("a/+/c", "a//c", True),
])
def test_topic_matches(topic_filter, topic, match):
    assert topic_matches(topic_filter, topic) is match


@pytest.mark.parametrize("topic_filter,ok", [
    ("a/#", True), ("#", True), ("+/b/+", True), ("a/#/b", False), ("a#", False),
    ("a/b+", False), ("", False), ("a\0b", False),
])
def test_valid_filter(topic_filter, ok):
    assert valid_filter(topic_filter) is ok
