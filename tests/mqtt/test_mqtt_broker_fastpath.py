"""MqttBroker's per-message path: PUBACKs in a row, cached topics and ACL decisions."""

import socket

import pytest

from support.loop import wait_until
from support.mqtt import (CONNACK5, Paho, closed_by_peer, connect_packet, mqtt_string, packet,
                          polled_brokers, raw_client, read_publish, recv_exact)


@pytest.fixture
def serve():
    """Start an MqttBroker with options, polled on a thread: returns (broker, loop)."""
    yield from polled_brokers(sys_interval=0)


def subscriber(port, v5=False):
    """A raw client subscribed to ``w`` at QoS 1 (MQTT 5 when ``v5``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if v5:
        sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x05\x02\x00\x00\x00"
                            + mqtt_string("s5")))
        assert recv_exact(sock, len(CONNACK5)) == CONNACK5
        sock.sendall(packet(0x82, b"\x00\x01\x00" + mqtt_string("w") + b"\x01"))
        assert recv_exact(sock, 6) == b"\x90\x04\x00\x01\x00\x01"
    else:
        sock.sendall(connect_packet("s4"))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(packet(0x82, b"\x00\x01" + mqtt_string("w") + b"\x01"))
        assert recv_exact(sock, 5) == b"\x90\x03\x00\x01\x01"
    return sock


def puback(pid, long_form=False):
    # the long form carries a reason code (MQTT 5)
    return packet(0x40, pid.to_bytes(2, "big") + (b"\x00" if long_form else b""))


@pytest.mark.parametrize("v5", [False, True])
def test_pubacks_in_one_write_free_the_window(serve, v5):
    b, loop = serve(max_inflight=4)
    sock = subscriber(b.port, v5)
    pub = Paho(b.port, client_id="pub")
    try:
        for i in range(12):
            pub.pub("w", b"m%d" % i, 1)  # queued behind the window of 4
        got = []
        for burst in range(3):
            msgs = [read_publish(sock) for _ in range(4)]
            assert all(flags == 0x02 for flags, _, _, _ in msgs)  # QoS 1, no DUP
            got += [data[1:] if v5 else data for _, _, _, data in msgs]
            pids = [pid for _, _, pid, _ in msgs]
            # all four acknowledgements in one segment; in MQTT 5 one of them
            # in the long form, which ends a run of short ones
            sock.sendall(b"".join(puback(pid, long_form=v5 and i == 1)
                                  for i, pid in enumerate(pids)))
        assert got == [b"m%d" % i for i in range(12)]
        wait_until(lambda: loop.call(lambda: b.stats["messages/inflight"]) == 0)
    finally:
        pub.stop()
        sock.close()


def test_a_run_of_pubacks_ends_at_another_packet(serve):
    b, loop = serve(max_inflight=2)
    sock = subscriber(b.port)
    pub = Paho(b.port, client_id="pub")
    try:
        for i in range(3):
            pub.pub("w", b"m%d" % i, 1)
        first = [read_publish(sock) for _ in range(2)]
        # an id nobody uses is ignored; the PINGREQ after the run is answered
        sock.sendall(puback(999) + b"".join(puback(pid) for _, _, pid, _ in first)
                     + b"\xc0\x00")
        assert read_publish(sock)[3] == b"m2"
        assert recv_exact(sock, 2) == b"\xd0\x00"
    finally:
        pub.stop()
        sock.close()


def test_an_oversize_packet_after_a_run_of_pubacks_closes_the_connection(serve):
    b, loop = serve(max_inflight=2, max_packet_size=64)
    sock = subscriber(b.port)
    pub = Paho(b.port, client_id="pub")
    try:
        pub.pub("w", b"m0", 1)
        _, _, pid, _ = read_publish(sock)
        sock.sendall(puback(pid) + puback(pid + 1) + packet(0x30, mqtt_string("w") + b"x" * 100))
        assert closed_by_peer(sock)
        wait_until(lambda: loop.call(lambda: b.clients) == ("pub",))
    finally:
        pub.stop()
        sock.close()


@pytest.mark.parametrize("topic", [b"\xff\xfe", b"a\x00b", b"", b"a/#"],
                         ids=["not UTF-8", "NUL", "empty", "wildcard"])
def test_a_bad_publish_topic_closes_each_sender(serve, topic):
    b, loop = serve()
    good = Paho(b.port, client_id="good")
    good.sub("alive", 0)
    try:
        for client_id in ("evil1", "evil2"):  # a refused topic is not remembered as good
            sock = raw_client(b.port, client_id)
            try:
                sock.sendall(packet(0x30, len(topic).to_bytes(2, "big") + topic + b"x"))
                assert closed_by_peer(sock)
            finally:
                sock.close()
        good.pub("alive", b"yes", 0)
        wait_until(lambda: good.messages)
    finally:
        good.stop()


def test_acl_write_decision_is_remembered_until_subscriptions_change(serve):
    asked = []

    def acl(client_id, username, topic, access):
        if access == "write":
            asked.append((client_id, topic))
        return client_id != "muted"

    b, loop = serve(acl=acl)
    sub = Paho(b.port, client_id="sub")
    sub.sub("t", 1)
    pub = Paho(b.port, client_id="pub")
    muted = Paho(b.port, client_id="muted")
    try:
        for i in range(3):
            pub.pub("t", b"p%d" % i, 1)
            muted.pub("t", b"m%d" % i, 1)  # acknowledged, then dropped
        pub.pub("t", b"end", 1)
        wait_until(lambda: b"end" in sub.payloads())
        assert sub.payloads() == [b"p0", b"p1", b"p2", b"end"]
        assert sorted(asked) == [("muted", "t"), ("pub", "t")]
        sub.sub("other", 0)  # subscriptions changed: decisions are asked again
        pub.pub("t", b"again", 1)
        wait_until(lambda: b"again" in sub.payloads())
        assert asked.count(("pub", "t")) == 2
    finally:
        for p in (sub, pub, muted):
            p.stop()
