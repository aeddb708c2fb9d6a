"""MqttBroker sessions: kept subscriptions, offline queueing, resending, exactly-once QoS 2."""

import socket

import pytest

import cymongoose as cm
from support.fixtures import made
from support.loop import LoopThread, wait_until
from support.mqtt import Paho, mqtt_string, packet, read_publish, recv_exact, session_client


@pytest.fixture
def broker():
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", max_queued=5)
    loop = LoopThread(mgr).start()
    yield b, loop
    loop.stop()
    mgr.close()


@pytest.fixture
def peer(broker):
    yield from made(lambda **kwargs: Paho(broker[0].port, **kwargs), Paho.stop)


def test_paho_persistent_session_gets_messages_queued_while_away(broker, peer):
    b, loop = broker
    sub = peer(client_id="keeper", clean_session=False)
    sub.sub("q/#", 1)
    sub.stop()  # DISCONNECT: the session stays
    wait_until(lambda: loop.call(lambda: b.clients) == ())
    assert loop.call(lambda: b.sessions) == ("keeper",)
    pub = peer(client_id="pub")
    for i in range(3):
        pub.pub("q/%d" % i, b"m%d" % i, 1)
    pub.pub("q/zero", b"dropped: QoS 0 is not queued", 0)
    back = peer(client_id="keeper", clean_session=False)  # no new SUBSCRIBE
    wait_until(lambda: len(back.messages) == 3)
    assert [(m.topic, m.payload, m.qos) for m in back.messages] == [
        ("q/0", b"m0", 1), ("q/1", b"m1", 1), ("q/2", b"m2", 1)]


def test_a_clean_session_forgets_the_kept_one(broker, peer):
    b, loop = broker
    sub = peer(client_id="forget", clean_session=False)
    sub.sub("f/#", 1)
    sub.stop()
    peer(client_id="pub").pub("f/1", b"x", 1)
    sock, present = session_client(b.port, "forget", clean=True)
    try:
        assert present == 0
        assert loop.call(lambda: b.stats["messages/queued"]) == 0
    finally:
        sock.close()


def test_unacknowledged_messages_are_resent_with_dup_in_order(broker, peer):
    b, loop = broker
    sock, present = session_client(b.port, "slow")
    assert present == 0
    sock.sendall(packet(0x82, b"\x00\x01" + mqtt_string("r/#") + b"\x02"))
    assert recv_exact(sock, 5) == b"\x90\x03\x00\x01\x02"
    pub = peer(client_id="pub")
    pub.pub("r/1", b"one", 1)
    pub.pub("r/2", b"two", 2)
    first = [read_publish(sock) for _ in range(2)]
    assert [(f & 0x08, t, p) for f, t, _, p in first] == [(0, "r/1", b"one"), (0, "r/2", b"two")]
    sock.close()  # gone without acknowledging either
    wait_until(lambda: loop.call(lambda: b.clients) == ("pub",))
    sock, present = session_client(b.port, "slow")
    try:
        assert present == 1
        again = [read_publish(sock) for _ in range(2)]
        # same ids, DUP set, same order
        assert [(f, t, i, p) for f, t, i, p in again] == [
            (0x08 | 0x02, "r/1", first[0][2], b"one"), (0x08 | 0x04, "r/2", first[1][2], b"two")]
        sock.sendall(b"\x40\x02" + first[0][2].to_bytes(2, "big"))  # PUBACK
        sock.sendall(b"\x50\x02" + first[1][2].to_bytes(2, "big"))  # PUBREC
        assert recv_exact(sock, 4) == b"\x62\x02" + first[1][2].to_bytes(2, "big")
        sock.sendall(b"\x70\x02" + first[1][2].to_bytes(2, "big"))  # PUBCOMP
        wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)
    finally:
        sock.close()


def test_a_full_queue_drops_the_newest(broker, peer):
    b, loop = broker
    sub = peer(client_id="away", clean_session=False)
    sub.sub("d/#", 1)
    sub.stop()
    pub = peer(client_id="pub")
    for i in range(8):
        pub.pub("d/%d" % i, b"%d" % i, 1)
    stats = loop.call(lambda: b.stats)
    assert stats["messages/queued"] == 5 and stats["messages/dropped"] == 3
    back = peer(client_id="away", clean_session=False)
    wait_until(lambda: len(back.messages) == 5)
    assert back.payloads() == [b"0", b"1", b"2", b"3", b"4"]


def test_resent_qos2_publish_is_delivered_once(broker, peer):
    b, loop = broker
    watcher = peer(client_id="watch")
    watcher.sub("x2", 2)
    sock, _ = session_client(b.port, "sender")
    try:
        publish = mqtt_string("x2") + b"\x00\x07" + b"once"
        sock.sendall(packet(0x34, publish))
        assert recv_exact(sock, 4) == b"\x50\x02\x00\x07"  # PUBREC
        sock.close()  # gone before PUBREL: it resends with DUP on its kept session
        sock, present = session_client(b.port, "sender")
        assert present == 1
        sock.sendall(packet(0x3C, publish))
        assert recv_exact(sock, 4) == b"\x50\x02\x00\x07"
        sock.sendall(b"\x62\x02\x00\x07")  # PUBREL
        assert recv_exact(sock, 4) == b"\x70\x02\x00\x07"  # PUBCOMP
        sock.sendall(packet(0x34, mqtt_string("x2") + b"\x00\x07" + b"next"))  # id reused
        assert recv_exact(sock, 4) == b"\x50\x02\x00\x07"
        wait_until(lambda: len(watcher.messages) == 2)
        assert watcher.payloads() == [b"once", b"next"]
    finally:
        sock.close()


def test_a_second_connection_takes_the_session_over(broker, peer):
    b, loop = broker
    first = peer(client_id="twin", clean_session=False)
    first.sub("t/#", 1)
    second = peer(client_id="twin", clean_session=False)  # session present: subs kept
    assert first.disconnected.wait(5)
    first.c.loop_stop()  # paho would reconnect (after 1 s) and take the session back
    peer(client_id="pub").pub("t/x", b"to the newer one", 1)
    wait_until(lambda: second.messages)
    assert second.payloads() == [b"to the newer one"]
    assert sorted(loop.call(lambda: b.clients)) == ["pub", "twin"]


def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(peer):
    a = peer(client_id="over")
    a.sub("o/#", 0)
    a.sub("o/+", 2)
    a.sub("o/x", 1)
    peer(client_id="pub").pub("o/x", b"m", 2)
    wait_until(lambda: a.messages)
    b2 = peer(client_id="marker")
    b2.pub("o/y", b"end", 0)
    wait_until(lambda: len(a.messages) == 2)
    assert [(m.payload, m.qos) for m in a.messages] == [(b"m", 2), (b"end", 0)]


# -- MQTT 5 session expiry --------------------------------------------------------

def connect5(port: int, client_id: str, expiry: int):
    """A raw MQTT 5 client (Clean Start 0) asking for a Session Expiry Interval
    of ``expiry`` seconds; returns the socket and CONNACK's session-present flag."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    props = b"\x11" + expiry.to_bytes(4, "big")
    sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x05\x00\x00\x00" + bytes([len(props)])
                        + props + mqtt_string(client_id)))
    ack = recv_exact(sock, 7)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    return sock, ack[2]


def disconnect5(sock, expiry=None) -> None:
    """DISCONNECT (normal), with a new Session Expiry Interval when given; then closed."""
    if expiry is None:
        sock.sendall(b"\xe0\x00")
    else:
        sock.sendall(b"\xe0\x07\x00\x05\x11" + expiry.to_bytes(4, "big"))
    sock.settimeout(5)
    assert sock.recv(1) == b""
    sock.close()


def test_an_mqtt5_session_expires_its_interval_after_its_connection(broker):
    """MQTT 5 section 3.1.2.11.2: the broker drops a session once its Session
    Expiry Interval has passed without a connection; one that never expires
    (0xFFFFFFFF), or that DISCONNECT gave a longer interval, stays; one that
    DISCONNECT set to 0 goes with its connection; reconnecting in time finds it."""
    b, loop = broker
    sessions = lambda: set(loop.call(lambda: b.sessions))  # noqa: E731
    for client_id, expiry in (("short", 1), ("never", 0xFFFFFFFF), ("longer", 1),
                              ("zeroed", 60), ("back", 60)):
        sock, present = connect5(b.port, client_id, expiry)
        assert present == 0
        disconnect5(sock, {"longer": 3600, "zeroed": 0}.get(client_id))
    wait_until(lambda: "zeroed" not in sessions())
    sock, present = connect5(b.port, "back", 60)  # within its interval: still there
    assert present == 1
    disconnect5(sock, 0)  # and DISCONNECT ends it now
    wait_until(lambda: "short" not in sessions())
    assert sessions() == {"never", "longer"}
    sock, present = connect5(b.port, "short", 1)  # a new session, not the expired one
    assert present == 0
    sock.close()


def test_the_persistence_file_keeps_a_session_expiry(tmp_path):
    """A kept MQTT 5 session comes back from the persistence file with its
    interval, counted again from the start: a long one is there to resume,
    a short one expires."""
    path = str(tmp_path / "broker.json")
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", persistence_file=path)
    loop = LoopThread(mgr).start()
    try:
        for client_id, expiry in (("long", 3600), ("brief", 2)):
            disconnect5(connect5(b.port, client_id, expiry)[0])
        wait_until(lambda: loop.call(lambda: b.clients) == ())
        loop.call(b.close)
    finally:
        loop.stop()
        mgr.close()
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", persistence_file=path)
    loop = LoopThread(mgr).start()
    try:
        assert set(loop.call(lambda: b.sessions)) == {"long", "brief"}
        wait_until(lambda: loop.call(lambda: b.sessions) == ("long",))
        sock, present = connect5(b.port, "long", 3600)
        assert present == 1
        sock.close()
    finally:
        loop.stop()
        mgr.close()


def test_an_mqtt5_receive_maximum_caps_the_unacknowledged_deliveries(broker, peer):
    """MQTT-3.3.4-9: no more QoS 1 PUBLISHes unacknowledged than the client's
    Receive Maximum (2 here, under the broker's max_inflight of 20); each
    PUBACK lets the next one go."""
    b, loop = broker
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    props = b"\x21\x00\x02"  # Receive Maximum 2
    sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x00" + bytes([len(props)])
                        + props + mqtt_string("small")))
    assert recv_exact(sock, 7)[:4] == b"\x20\x05\x00\x00"
    sock.sendall(packet(0x82, b"\x00\x01\x00" + mqtt_string("r/#") + b"\x01"))
    assert recv_exact(sock, 6) == b"\x90\x04\x00\x01\x00\x01"
    pub = peer(client_id="pub")
    for i in range(4):
        pub.pub("r/%d" % i, b"m%d" % i, 1)  # each acknowledged: the broker has routed it

    def publish() -> bytes:
        head = recv_exact(sock, 2)
        assert head[0] & 0xF0 == 0x30 and head[1] < 128
        return recv_exact(sock, head[1])

    got = [publish(), publish()]
    sock.sendall(b"\xc0\x00")  # PINGREQ: anything sent before it comes first
    assert recv_exact(sock, 2) == b"\xd0\x00"  # PINGRESP, and no third PUBLISH
    for body in got:
        pid = body[2 + body[1]:4 + body[1]]  # after the topic
        sock.sendall(b"\x40\x02" + pid)  # PUBACK: one more may go
    got += [publish(), publish()]
    assert [body[2:2 + body[1]] for body in got] == [b"r/0", b"r/1", b"r/2", b"r/3"]
    sock.close()
