"""MqttBroker's MQTT 5 features, against paho-mqtt's MQTT 5 client and raw peers:
properties passed on, message expiry, subscription options, shared
subscriptions, the client's Maximum Packet Size, an assigned client id, and
the DISCONNECT that names a protocol error."""

import socket

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from support.fixtures import made
from support.loop import wait_until
from cymongoose._broker_packets import varint
from support.mqtt import (CONNACK5, Paho, closed_by_peer, mqtt_string, packet, polled_brokers,
                          read_packet, recv_exact)

V5 = paho.MQTTv5


@pytest.fixture
def brokers():
    yield from polled_brokers()


@pytest.fixture
def broker(brokers):
    return brokers()


@pytest.fixture
def peer(broker):
    yield from made(lambda **kwargs: Paho(broker[0].port, **kwargs), Paho.stop)


def publish_props(**values):
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def kept(expiry=3600):
    """CONNECT properties of a session that outlives its connection."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    return props


RICH = dict(UserProperty=[("a", "1"), ("b", "2")], ContentType="text/plain",
            ResponseTopic="replies/x", CorrelationData=b"\x00id", PayloadFormatIndicator=1)


def passed_on(msg):
    p = msg.properties
    return dict(UserProperty=p.UserProperty, ContentType=p.ContentType,
                ResponseTopic=p.ResponseTopic, CorrelationData=p.CorrelationData,
                PayloadFormatIndicator=p.PayloadFormatIndicator)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_properties_reach_v5_subscribers_and_v311_ones_get_the_message(peer, qos):
    v5 = peer(client_id="v5", protocol=V5)
    v5.sub("t/#", 2)
    old = peer(client_id="old")
    old.sub("t/#", 2)
    pub = peer(client_id="pub", protocol=V5)
    for i in range(2):  # the second one on the route the first one left
        pub.pub("t/x", b"m%d" % i, qos, properties=publish_props(**RICH))
    wait_until(lambda: len(v5.messages) == 2 and len(old.messages) == 2)
    for msg in v5.messages:
        assert passed_on(msg) == RICH
    assert old.payloads() == [b"m0", b"m1"]


def test_properties_wait_with_an_absent_session_and_survive_the_persistence_file(
        brokers, tmp_path):
    path = str(tmp_path / "broker.json")
    b, loop = brokers(persistence_file=path)
    away = Paho(b.port, client_id="away", protocol=V5, clean_session=False,
                properties=kept())
    away.sub("q", 1)
    away.stop()
    pub = Paho(b.port, client_id="pub", protocol=V5)
    try:
        pub.pub("q", b"queued", 1, properties=publish_props(**RICH))
    finally:
        pub.stop()
    loop.call(b.close)
    b2, _ = brokers(persistence_file=path)
    back = Paho(b2.port, client_id="away", protocol=V5, clean_session=False,
                properties=kept())
    try:
        wait_until(lambda: back.messages)
        assert back.payloads() == [b"queued"]
        assert passed_on(back.messages[0]) == RICH
    finally:
        back.stop()


def test_message_expiry_goes_on_as_what_is_left_and_expired_messages_are_not_sent(peer):
    away = peer(client_id="away", protocol=V5, clean_session=False, properties=kept())
    away.sub("e", 1)
    away.stop()
    pub = peer(client_id="pub", protocol=V5)
    pub.pub("e", b"gone", 1, properties=publish_props(MessageExpiryInterval=0))
    pub.pub("e", b"kept", 1, properties=publish_props(MessageExpiryInterval=60))
    pub.pub("e", b"forever", 1)
    pub.pub("e", b"end", 1)
    back = peer(client_id="away", protocol=V5, clean_session=False, properties=kept())
    wait_until(lambda: back.payloads()[-1:] == [b"end"])
    assert back.payloads() == [b"kept", b"forever", b"end"]
    assert 58 <= back.messages[0].properties.MessageExpiryInterval <= 60
    assert not hasattr(back.messages[1].properties, "MessageExpiryInterval")


def test_retained_messages_keep_their_properties_and_expire(peer):
    pub = peer(client_id="pub", protocol=V5)
    pub.pub("r/a", b"kept", 1, retain=True, properties=publish_props(**RICH))
    pub.pub("r/b", b"gone", 1, retain=True, properties=publish_props(MessageExpiryInterval=0))
    pub.pub("r/c", b"last", 1, retain=True)
    sub = peer(client_id="sub", protocol=V5)
    sub.sub("r/#", 1)
    wait_until(lambda: len(sub.messages) == 2)
    assert sorted(sub.payloads()) == [b"kept", b"last"]
    kept_msg = [m for m in sub.messages if m.payload == b"kept"][0]
    assert kept_msg.retain and passed_on(kept_msg) == RICH


def test_a_will_carries_its_properties(peer):
    sub = peer(client_id="sub", protocol=V5)
    sub.sub("wills/#", 1)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.UserProperty = [("why", "gone")]
    will_props.ContentType = "text/plain"
    dying = peer(client_id="dying", protocol=V5,
                 will=dict(topic="wills/dying", payload=b"bye", qos=1, properties=will_props))
    dying.c._sock.close()  # no DISCONNECT: the will goes out
    wait_until(lambda: sub.messages)
    msg = sub.messages[0]
    assert msg.payload == b"bye"
    assert msg.properties.UserProperty == [("why", "gone")]
    assert msg.properties.ContentType == "text/plain"


def test_an_empty_client_id_is_assigned_one_in_the_connack(peer):
    a = peer(client_id="", protocol=V5)
    b = peer(client_id="", protocol=V5)
    ids = a.connack.AssignedClientIdentifier, b.connack.AssignedClientIdentifier
    assert all(ids) and ids[0] != ids[1]
    c = peer(client_id="named", protocol=V5)
    assert not hasattr(c.connack, "AssignedClientIdentifier")


def test_no_local_and_retain_as_published(peer):
    a = peer(client_id="a", protocol=V5)
    a.sub("n", options=SubscribeOptions(qos=1, noLocal=True))
    b = peer(client_id="b", protocol=V5)
    b.sub("n", options=SubscribeOptions(qos=1, retainAsPublished=True))
    a.pub("n", b"from a", 1, retain=True)
    b.pub("n", b"from b", 1)
    wait_until(lambda: len(b.messages) == 2 and a.messages)
    assert a.payloads() == [b"from b"]
    assert [(m.payload, bool(m.retain)) for m in b.messages] == [(b"from a", True),
                                                                (b"from b", False)]


def test_retain_handling(peer):
    pub = peer(client_id="pub")
    pub.pub("h", b"retained", 1, retain=True)
    s = peer(client_id="s", protocol=V5)
    s.sub("h", options=SubscribeOptions(qos=1, retainHandling=1))
    s.sub("h", options=SubscribeOptions(qos=1, retainHandling=1))  # not new: none
    s.sub("h2/#", options=SubscribeOptions(qos=1, retainHandling=2))
    s.sub("h", options=SubscribeOptions(qos=1, retainHandling=0))  # always
    pub.pub("h2/x", b"end", 1)
    wait_until(lambda: s.payloads()[-1:] == [b"end"])
    assert s.payloads() == [b"retained", b"retained", b"end"]


def test_a_shared_subscription_gives_each_message_to_one_member_in_turn(peer):
    members = [peer(client_id="m%d" % i, protocol=V5) for i in range(2)]
    for m in members:
        m.sub("$share/g/jobs/+", 1)
        m.sub("all", 1)
    watcher = peer(client_id="w", protocol=V5)
    watcher.sub("jobs/#", 1)
    pub = peer(client_id="pub")
    for i in range(6):
        pub.pub("jobs/a", b"%d" % i, 1)
    pub.pub("all", b"end", 1)
    wait_until(lambda: all(m.payloads("all") for m in members) and len(watcher.messages) == 6)
    got = [m.payloads("jobs/a") for m in members]
    assert sorted(got[0] + got[1]) == [b"%d" % i for i in range(6)]
    assert len(got[0]) == len(got[1]) == 3


def test_shared_subscription_checks(broker):
    """A share name with a wildcard or no filter gets 0x8F; No Local on a
    shared subscription is a protocol error; retained messages are not sent
    to a shared subscription (MQTT 5 section 4.8.2)."""
    b, _ = broker
    pub = Paho(b.port, client_id="pub")
    try:
        pub.pub("kept", b"r", 1, retain=True)
    finally:
        pub.stop()
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5())
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        filters = [("$share/g+/t", 1), ("$share/g", 1), ("$share//t", 1), ("$share/g/kept", 1)]
        body = b"\x00\x07\x00" + b"".join(mqtt_string(f) + bytes([o]) for f, o in filters)
        sock.sendall(packet(0x82, body))
        assert recv_exact(sock, 9) == b"\x90\x07\x00\x07\x00\x8f\x8f\x8f\x01"
        sock.sendall(b"\xc0\x00")  # PINGREQ: no retained PUBLISH comes before its answer
        assert recv_exact(sock, 2) == b"\xd0\x00"
        sock.sendall(packet(0x82, b"\x00\x08\x00" + mqtt_string("$share/g/t") + b"\x05"))
        assert recv_exact(sock, 4) == b"\xe0\x02\x82\x00"  # DISCONNECT: Protocol Error
        assert closed_by_peer(sock)


def connect5(client_id="raw", props=b""):
    return packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x00" + bytes([len(props)]) + props
                  + mqtt_string(client_id))


def test_the_client_maximum_packet_size_drops_bigger_messages(broker):
    b, _ = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5(props=b"\x27\x00\x00\x00\x40"))  # Maximum Packet Size 64
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sock.sendall(packet(0x82, b"\x00\x01\x00" + mqtt_string("big") + b"\x01"))
        assert recv_exact(sock, 6) == b"\x90\x04\x00\x01\x00\x01"
        pub = Paho(b.port, client_id="pub")
        try:
            for size in (80, 10, 200):
                pub.pub("big", b"x" * size, size % 2)
        finally:
            pub.stop()
        # only the 10-byte one fits in 64 bytes: PUBLISH QoS 0, topic "big"
        assert recv_exact(sock, 18) == b"\x30\x10\x00\x03big\x00" + b"x" * 10
        sock.sendall(b"\xc0\x00")
        assert recv_exact(sock, 2) == b"\xd0\x00"


@pytest.mark.parametrize("props, code", [
    (b"\x23\x00\x01", 0x94),  # Topic Alias: the CONNACK allows none
    (b"\x23\x00\x00", 0x94),
    (b"\x0b\x01", 0x82),  # Subscription Identifier from a client
    (b"\x24\x01", 0x82),  # Maximum QoS: not a PUBLISH property
    (b"\x03\x00\x01a\x03\x00\x01b", 0x82),  # Content Type twice
    (b"\x08\x00\x01#", 0x82),  # a wildcard in the Response Topic
    (b"\x01\x02", 0x82),  # Payload Format Indicator 2
    (b"\x26\x00\x01\xff\x00\x00", 0x82),  # a User Property name that is not UTF-8
    (b"\x26\x00\x05ab", 0x82),  # running past the block
    (b"\x18\x00\x00\x00\x01", 0x82),  # Will Delay Interval: a will's only
], ids=["alias", "alias-0", "subscription-id", "max-qos", "content-type-twice",
        "response-wildcard", "format-2", "not-utf8", "short", "will-delay"])
def test_a_bad_publish_property_gets_a_disconnect_with_its_reason(broker, peer, props, code):
    b, _ = broker
    sub = peer(client_id="sub")
    sub.sub("p", 0)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5())
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sock.sendall(packet(0x30, mqtt_string("p") + bytes([len(props)]) + props + b"bad"))
        assert recv_exact(sock, 4) == bytes((0xE0, 2, code, 0))
        assert closed_by_peer(sock)
    sub.pub("p", b"good", 0)
    wait_until(lambda: sub.messages)
    assert sub.payloads() == [b"good"]



def test_the_acl_judges_a_shared_subscription_by_its_filter(brokers):
    asked = []

    def acl(client_id, username, topic, access):
        asked.append((topic, access))
        return topic.startswith("jobs/")

    b, _ = brokers(acl=acl)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
        sock.sendall(connect5())
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        filters = ["$share/g/jobs/#", "$share/g/other"]
        sock.sendall(packet(0x82, b"\x00\x03\x00" + b"".join(mqtt_string(f) + b"\x01"
                                                             for f in filters)))
        assert recv_exact(sock, 7) == b"\x90\x05\x00\x03\x00\x01\x87"
    assert ("jobs/#", "subscribe") in asked and ("other", "subscribe") in asked


def test_a_connection_whose_session_is_taken_over_is_told_so(peer):
    first = peer(client_id="same", protocol=V5)
    peer(client_id="same", protocol=V5)
    assert first.disconnected.wait(5)
    assert first.reason.value == 0x8E  # Session taken over


def test_a_publish_with_many_user_properties_is_passed_on_whole(broker):
    """A large property block (100,000 User Properties, as a hostile client
    might send) is checked in C and reaches the subscriber intact, on the
    first publish (Python's path) and on the cached route in C."""
    b, _ = broker
    props = b"\x26\x00\x01k\x00\x01v" * 100000
    block = varint(len(props)) + props
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sub, \
            socket.create_connection(("127.0.0.1", b.port), timeout=5) as pub:
        for sock, name in ((sub, "sub"), (pub, "pub")):
            sock.sendall(connect5(name))
            assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sub.sendall(packet(0x82, b"\x00\x01\x00" + mqtt_string("many") + b"\x00"))
        assert recv_exact(sub, 6) == b"\x90\x04\x00\x01\x00\x00"
        for payload in (b"first", b"second"):
            pub.sendall(packet(0x30, mqtt_string("many") + block + payload))
            first, body = read_packet(sub, timeout=30)
            assert first == 0x30 and body == mqtt_string("many") + block + payload


@pytest.mark.parametrize("kind", ["connect", "subscribe"])
def test_huge_blocks_of_user_properties_elsewhere_are_read_in_c(broker, kind):
    """CONNECT and SUBSCRIBE properties hold User Properties too: a block of
    100,000 is read (in C), and one whose name is not UTF-8 closes."""
    b, _ = broker
    many = b"\x26\x00\x01k\x00\x01v" * 100000
    bad = b"\x26\x00\x01\xff\x00\x00"
    for props, ok in ((many, True), (bad, False)):
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
            if kind == "connect":
                sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x00"
                                    + varint(len(props)) + props + mqtt_string("c")))
                if not ok:
                    assert closed_by_peer(sock)
                    continue
                assert recv_exact(sock, len(CONNACK5), timeout=30) == CONNACK5
            else:
                sock.sendall(connect5("s"))
                assert recv_exact(sock, len(CONNACK5)) == CONNACK5
                sock.sendall(packet(0x82, b"\x00\x01" + varint(len(props)) + props
                                    + mqtt_string("t") + b"\x01"))
                if not ok:
                    assert recv_exact(sock, 4) == b"\xe0\x02\x82\x00"
                    assert closed_by_peer(sock)
                    continue
                assert recv_exact(sock, 6, timeout=30) == b"\x90\x04\x00\x01\x00\x01"
