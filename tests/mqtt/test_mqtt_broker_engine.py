"""MqttBroker's C engine: cached routes, the in-flight window and acks in C, with real peers.

After Python has routed a QoS 0/1 publish, later publishes on that topic go
from the C parser straight to the receiving sessions; those tests check that
everything Python decided still holds when it is no longer asked: ACLs per
publisher, subscription changes, clients leaving and coming back, bridges,
retained messages, persistence.
"""

import logging

import pytest

import cymongoose as cm
from cymongoose._ffi import lib
from support.fixtures import made
from support.loop import LoopThread, wait_until
from support.mqtt import (Mosquitto, Paho, mqtt_string, packet, polled_brokers, read_publish,
                          recv_exact, session_client)


@pytest.fixture
def serve():
    """Start an MqttBroker with options, polled on a thread: returns (broker, loop)."""
    yield from polled_brokers()


@pytest.fixture
def peers():
    yield from made(lambda port, **kwargs: Paho(port, **kwargs), Paho.stop)


def in_c(loop, b):
    """Publishes the C engine routed by itself."""
    return loop.call(lambda: lib.cym_broker_received(b._engine))


def subscribe(sock, topic_filter, qos):
    sock.sendall(packet(0x82, b"\x00\x01" + mqtt_string(topic_filter) + bytes([qos])))
    assert recv_exact(sock, 5) == b"\x90\x03\x00\x01" + bytes([qos])


def test_a_stream_on_a_cached_route_arrives_whole_in_order_and_counted(serve, peers):
    b, loop = serve()
    sub = peers(b.port, client_id="sub")
    sub.sub("s/t", 1)
    sock, _ = session_client(b.port, "pub", clean=True)
    try:
        sent, stream = [], b""
        for i in range(150):  # QoS 0 and 1 in turn, in one burst
            body = b"%d" % i
            sent.append(body)
            if i % 2:
                stream += packet(0x32, mqtt_string("s/t") + i.to_bytes(2, "big") + body)
            else:
                stream += packet(0x30, mqtt_string("s/t") + body)
        sock.sendall(stream)
        acks = recv_exact(sock, 4 * 75)
        assert acks == b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 150, 2))
    finally:
        sock.close()
    wait_until(lambda: len(sub.messages) == len(sent))
    # in order per QoS (MQTT 4.6): QoS 1 beyond the in-flight window waits, QoS 0 does not
    for qos in (0, 1):
        assert [m.payload for m in sub.messages if m.qos == qos] == sent[qos::2]
    assert in_c(loop, b) == 149  # the first publish taught C the route
    stats = loop.call(lambda: b.stats)
    assert stats["messages/received"] == len(sent)
    assert stats["messages/sent"] == len(sent)
    wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)


def test_cached_routes_follow_subscription_changes(serve, peers):
    b, loop = serve()
    first = peers(b.port, client_id="first")
    first.sub("c/t", 0)
    pub = peers(b.port, client_id="pub")
    for i in range(3):
        pub.pub("c/t", b"a%d" % i, 1)
    wait_until(lambda: len(first.messages) == 3)
    second = peers(b.port, client_id="second")
    second.sub("c/#", 1)
    pub.pub("c/t", b"both", 1)
    wait_until(lambda: second.payloads() == [b"both"])
    first.unsub("c/t")
    pub.pub("c/t", b"second only", 1)
    pub.pub("c/t", b"second only again", 1)
    wait_until(lambda: len(second.messages) == 3)
    marker = peers(b.port, client_id="marker")
    marker.sub("m", 0)
    first.sub("m", 0)
    pub.pub("m", b"end", 0)
    wait_until(lambda: first.payloads("m") == [b"end"])
    assert first.payloads("c/t") == [b"a0", b"a1", b"a2", b"both"]
    assert second.payloads() == [b"both", b"second only", b"second only again"]
    assert [m.qos for m in second.messages] == [1, 1, 1]


def test_an_acl_write_decision_stays_per_publisher(serve, peers, caplog):
    def acl(client_id, username, topic, access):
        return access != "write" or client_id == "good"

    b, loop = serve(acl=acl)
    sub = peers(b.port, client_id="sub")
    sub.sub("w/t", 1)
    good = peers(b.port, client_id="good")
    bad = peers(b.port, client_id="bad")
    with caplog.at_level(logging.WARNING, "cymongoose.broker"):
        for i in range(3):
            good.pub("w/t", b"good %d" % i, 1)
        for i in range(3):
            bad.pub("w/t", b"bad %d" % i, i % 2)  # the route is cached by now
        good.pub("w/t", b"good end", 1)
    wait_until(lambda: len(sub.messages) == 4)
    assert sub.payloads() == [b"good 0", b"good 1", b"good 2", b"good end"]
    denied = [r.getMessage() for r in caplog.records if "denied by the ACL" in r.getMessage()]
    assert len(denied) == 3 and all("'bad'" in t for t in denied)
    assert in_c(loop, b) >= 2


def test_a_kept_session_queues_while_away_on_a_cached_topic(serve, peers):
    b, loop = serve()
    keeper = peers(b.port, client_id="keeper", clean_session=False)
    keeper.sub("k/t", 1)
    other = peers(b.port, client_id="other")
    other.sub("k/t", 1)
    pub = peers(b.port, client_id="pub")
    for i in range(3):
        pub.pub("k/t", b"live %d" % i, 1)
    wait_until(lambda: len(keeper.messages) == 3)
    keeper.stop()
    wait_until(lambda: "keeper" not in loop.call(lambda: b.clients))
    for i in range(3):
        pub.pub("k/t", b"away %d" % i, 1)
    wait_until(lambda: len(other.messages) == 6)
    assert loop.call(lambda: b.stats["messages/queued"]) == 3
    back = peers(b.port, client_id="keeper", clean_session=False)
    wait_until(lambda: len(back.messages) == 3)
    assert back.payloads() == [b"away 0", b"away 1", b"away 2"]
    pub.pub("k/t", b"back", 1)
    wait_until(lambda: back.payloads()[-1:] == [b"back"])


def test_the_window_holds_the_rest_until_acknowledged_in_c(serve, peers):
    b, loop = serve(max_inflight=2)
    sock, _ = session_client(b.port, "slow", clean=True)
    try:
        subscribe(sock, "win/#", 1)
        pub = peers(b.port, client_id="pub")
        for i in range(5):
            pub.pub("win/t", b"m%d" % i, 1)
        got = [read_publish(sock) for _ in range(2)]
        assert [p for _, _, _, p in got] == [b"m0", b"m1"]
        wait_until(lambda: loop.call(lambda: b.stats["messages/queued"]) == 3)
        assert loop.call(lambda: b.stats["messages/inflight"]) == 2
        sock.sendall(b"\x40\x02" + got[1][2].to_bytes(2, "big"))  # out of order
        sock.sendall(b"\x40\x02\xff\xf0")  # an id never sent: ignored
        got.append(read_publish(sock))
        sock.sendall(b"\x40\x02" + got[0][2].to_bytes(2, "big"))
        got.append(read_publish(sock))
        for _, _, pid, _ in got[2:]:
            sock.sendall(b"\x40\x02" + pid.to_bytes(2, "big"))
        got.append(read_publish(sock))
        sock.sendall(b"\x40\x02" + got[-1][2].to_bytes(2, "big"))
        assert [p for _, _, _, p in got] == [b"m%d" % i for i in range(5)]
        assert len({pid for _, _, pid, _ in got}) == 5
        assert all(flags == 0x02 for flags, _, _, _ in got)
        wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)
        assert loop.call(lambda: b.stats["messages/queued"]) == 0
    finally:
        sock.close()


def test_qos2_deliveries_are_released_and_completed_in_c(serve, peers):
    b, loop = serve()
    sock, _ = session_client(b.port, "two", clean=True)
    try:
        subscribe(sock, "q2", 2)
        pub = peers(b.port, client_id="pub")
        pub.pub("q2", b"exactly once", 2)
        flags, topic, pid, payload = read_publish(sock)
        assert (flags, topic, payload) == (0x04, "q2", b"exactly once")
        sock.sendall(b"\x40\x02" + pid.to_bytes(2, "big"))  # PUBACK: not for QoS 2
        sock.sendall(b"\x70\x02" + pid.to_bytes(2, "big"))  # PUBCOMP before PUBREC
        sock.sendall(b"\x50\x02" + pid.to_bytes(2, "big"))  # PUBREC
        assert recv_exact(sock, 4) == b"\x62\x02" + pid.to_bytes(2, "big")  # PUBREL
        assert loop.call(lambda: b.stats["messages/inflight"]) == 1
        sock.sendall(b"\x70\x02" + pid.to_bytes(2, "big"))  # PUBCOMP
        wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)
    finally:
        sock.close()


def test_retained_and_bridged_publishes_still_take_python(tmp_path, serve, peers):
    mosq = Mosquitto(str(tmp_path)).start()
    try:
        b, loop = serve()
        bridge = loop.call(lambda: b.add_bridge("mqtt://127.0.0.1:%d" % mosq.port,
                                                ["gw/# out 0"], name="t",
                                                reconnect_min=0.02, reconnect_max=0.2))
        wait_until(lambda: loop.call(lambda: bridge.connected))
        upstream = peers(mosq.port, client_id="upstream")
        upstream.sub("gw/#", 0)
        local = peers(b.port, client_id="local")
        local.sub("#", 0)
        pub = peers(b.port, client_id="pub")
        for i in range(4):
            pub.pub("gw/t", b"up %d" % i, 0)
            pub.pub("r/t", b"plain %d" % i, 0)
        pub.pub("r/t", b"kept", 0, retain=True)
        pub.pub("r/t", b"plain 4", 0)
        wait_until(lambda: len(upstream.messages) == 4)
        assert upstream.payloads() == [b"up %d" % i for i in range(4)]
        wait_until(lambda: len(local.messages) == 10)
        assert local.payloads("gw/t") == [b"up %d" % i for i in range(4)]
        assert local.payloads("r/t") == [b"plain 0", b"plain 1", b"plain 2", b"plain 3",
                                         b"kept", b"plain 4"]
        late = peers(b.port, client_id="late")
        late.sub("r/t", 0)
        wait_until(lambda: late.messages)
        assert late.payloads() == [b"kept"] and late.messages[0].retain
    finally:
        mosq.stop()


def test_persistence_saves_what_a_connected_session_holds(tmp_path):
    store = str(tmp_path / "broker.json")
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", persistence_file=store, max_inflight=2)
    port = b.port
    loop = LoopThread(mgr).start()
    sock, _ = session_client(port, "held")
    pub = None
    try:
        subscribe(sock, "p/#", 1)
        pub = Paho(port, client_id="pub")
        for i in range(4):
            pub.pub("p/t", b"m%d" % i, 1)
        first = [read_publish(sock) for _ in range(2)]  # never acknowledged
        wait_until(lambda: loop.call(lambda: b.stats["messages/queued"]) == 2)
        pub.stop()
        pub = None
        loop.call(b.close)  # from a handler's thread: the save reads the C engine
    finally:
        if pub is not None:
            pub.stop()
        sock.close()
        loop.stop()
        mgr.close()
    mgr = cm.Manager()
    b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:%d" % port, persistence_file=store, max_inflight=2)
    loop = LoopThread(mgr).start()
    try:
        sock, present = session_client(port, "held")
        assert present == 1
        again = [read_publish(sock) for _ in range(2)]
        assert [(f, pid, p) for f, _, pid, p in again] == [
            (0x0A, first[0][2], b"m0"), (0x0A, first[1][2], b"m1")]
        for _, _, pid, _ in again:
            sock.sendall(b"\x40\x02" + pid.to_bytes(2, "big"))
        rest = [read_publish(sock) for _ in range(2)]
        assert [(f, p) for f, _, _, p in rest] == [(0x02, b"m2"), (0x02, b"m3")]
        sock.close()
    finally:
        loop.stop()
        mgr.close()


@pytest.mark.parametrize("size", [0, 200, 20000, 200000])
def test_payload_sizes_on_a_cached_route(serve, peers, size):
    # the delivery is framed in C: its remaining length takes 1 to 3 bytes here
    b, loop = serve()
    sub = peers(b.port, client_id="sub")
    sub.sub("big/t", 1)
    pub = peers(b.port, client_id="pub")
    bodies = [bytes([i]) * size for i in range(3)]
    for body in bodies:
        pub.pub("big/t", body, 1)
    wait_until(lambda: len(sub.messages) == 3)
    assert sub.payloads() == bodies
    assert in_c(loop, b) == 2


def test_an_mqtt5_subscriber_gets_deliveries_from_the_engine(serve, peers):
    b, loop = serve()
    sub = peers(b.port, client_id="sub5", protocol=5)
    sub.sub("five", 1)
    pub = peers(b.port, client_id="pub")
    for i in range(4):
        pub.pub("five", b"v%d" % i, i % 2)
    wait_until(lambda: len(sub.messages) == 4)
    assert sub.payloads() == [b"v0", b"v1", b"v2", b"v3"]
    assert [m.qos for m in sub.messages] == [0, 1, 0, 1]
    assert in_c(loop, b) == 3


def test_a_takeover_moves_the_held_messages_to_the_new_connection(serve, peers):
    b, loop = serve(max_inflight=1)
    old, _ = session_client(b.port, "moving")
    new = None
    try:
        subscribe(old, "mv", 1)
        pub = peers(b.port, client_id="pub")
        for i in range(3):
            pub.pub("mv", b"m%d" % i, 1)
        assert read_publish(old)[3] == b"m0"  # never acknowledged; m1, m2 queued
        wait_until(lambda: loop.call(lambda: b.stats["messages/queued"]) == 2)
        new, present = session_client(b.port, "moving")
        assert present == 1
        flags, _, pid, body = read_publish(new)
        assert (flags, body) == (0x0A, b"m0")  # resent with DUP
        for expected in (b"m1", b"m2"):
            new.sendall(b"\x40\x02" + pid.to_bytes(2, "big"))
            flags, _, pid, body = read_publish(new)
            assert (flags, body) == (0x02, expected)
        new.sendall(b"\x40\x02" + pid.to_bytes(2, "big"))
        wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)
    finally:
        old.close()
        if new is not None:
            new.close()
