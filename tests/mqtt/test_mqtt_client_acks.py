"""MqttClient's publish path: PUBACK runs read as one event, acks to a handler that
asks for them, resending with DUP (or PUBREL) after a reconnect, argument checks."""

import json
import socket

import pytest

import cymongoose as cm
from cymongoose._mqtt_session import ClientSession
from support.loop import LoopThread, wait_until
from support.mqtt import Mosquitto, Paho, packet, read_packet, read_publish, recv_exact, unique

CONNACK_NEW, CONNACK_KEPT = b"\x20\x02\x00\x00", b"\x20\x02\x01\x00"


def puback(pid):
    return packet(0x40, pid.to_bytes(2, "big"))


class FakeBroker:
    """A listening socket on which the test plays the broker, one connection at a time."""

    def __init__(self):
        self.lsn = socket.socket()
        self.lsn.bind(("127.0.0.1", 0))
        self.lsn.listen(4)
        self.lsn.settimeout(10)
        self.url = "mqtt://127.0.0.1:%d" % self.lsn.getsockname()[1]
        self.sock = None

    def accept(self, connack=CONNACK_NEW):
        """Take the client's next connection: its CONNECT, then our CONNACK."""
        if self.sock is not None:
            self.sock.close()
        self.sock, _ = self.lsn.accept()
        first, _ = read_packet(self.sock)
        assert first == 0x10
        self.sock.sendall(connack)
        return self.sock

    def publishes(self, n):
        return [read_publish(self.sock) for _ in range(n)]

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.lsn.close()


@pytest.fixture
def fake():
    """A FakeBroker and a Manager polled on a thread: yields (broker, mgr, loop)."""
    broker = FakeBroker()
    mgr = cm.Manager()
    loop = LoopThread(mgr).start()
    yield broker, mgr, loop
    loop.stop()
    mgr.close()
    broker.close()


@pytest.fixture
def runs(monkeypatch):
    """Records the PUBACK runs MqttClient reads as one event (their ids)."""
    seen = []
    original = ClientSession.pubacks

    def pubacks(self, packets):
        seen.append([int.from_bytes(packets[i:i + 2], "big") for i in range(2, len(packets), 4)])
        original(self, packets)

    monkeypatch.setattr(ClientSession, "pubacks", pubacks)
    return seen


def start(loop, mgr, url, handler=None, **options):
    options.setdefault("client_id", "acks")
    client = loop.call(lambda: cm.MqttClient(mgr, url, handler, **options))
    return client


@cm.handles(cm.MG_EV_MQTT_MSG)
def messages_only(conn, ev, data):
    assert ev == cm.MG_EV_MQTT_MSG


@pytest.mark.parametrize("handler", [None, messages_only], ids=["no-handler", "declared"])
def test_a_run_of_pubacks_frees_the_window_in_one_event(fake, runs, handler):
    broker, mgr, loop = fake
    client = start(loop, mgr, broker.url, handler, max_inflight=5)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: [client.publish("t", b"m%d" % i, 1) for i in range(12)])
    sent = broker.publishes(5)
    assert [(flags, pid, data) for flags, _, pid, data in sent] == \
        [(0x02, i, b"m%d" % (i - 1)) for i in range(1, 6)]
    # one write: an unknown id among them changes nothing
    broker.sock.sendall(b"".join(puback(pid) for pid in (1, 2, 99, 3, 4, 5)))
    assert [pid for _, _, pid, _ in broker.publishes(5)] == [6, 7, 8, 9, 10]
    broker.sock.sendall(b"".join(puback(pid) for pid in range(6, 11)))
    assert [pid for _, _, pid, _ in broker.publishes(2)] == [11, 12]
    broker.sock.sendall(puback(11) + puback(12))
    wait_until(lambda: loop.call(lambda: client.inflight + client.queued) == 0)
    assert runs == [[1, 2, 99, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]]
    loop.call(client.close)


@pytest.mark.parametrize("declared", [True, False])
def test_a_handler_that_takes_mqtt_cmd_sees_every_puback(fake, runs, declared):
    broker, mgr, loop = fake
    acks = []

    def on_event(conn, ev, data):
        if ev == cm.MG_EV_MQTT_CMD and data.cmd == 4:
            acks.append(data.id)

    handler = cm.handles(cm.MG_EV_MQTT_CMD)(on_event) if declared else on_event
    client = start(loop, mgr, broker.url, handler)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: [client.publish("t", b"x", 1) for _ in range(4)])
    broker.publishes(4)
    broker.sock.sendall(b"".join(puback(pid) for pid in (1, 2, 3, 4)))
    wait_until(lambda: len(acks) == 4)
    assert acks == [1, 2, 3, 4]
    assert runs == []  # one event per PUBACK
    assert loop.call(lambda: client.inflight) == 0
    loop.call(client.close)


def test_a_declared_handler_gets_only_the_events_it_names(fake):
    broker, mgr, loop = fake
    events = []

    @cm.handles(cm.MG_EV_MQTT_OPEN, cm.MG_EV_CLOSE)
    def handler(conn, ev, data):
        events.append(ev)

    client = start(loop, mgr, broker.url, handler, reconnect=False)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    broker.sock.close()
    broker.sock = None
    wait_until(lambda: cm.MG_EV_CLOSE in events)
    assert events == [cm.MG_EV_MQTT_OPEN, cm.MG_EV_CLOSE]
    loop.call(client.close)


def test_unacknowledged_messages_are_resent_with_dup_and_released_ones_get_pubrel(fake, runs):
    broker, mgr, loop = fake
    client = start(loop, mgr, broker.url, reconnect_min=0.02, reconnect_max=0.05)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: [client.publish("t", b"q1-%d" % i, 1) for i in range(4)])
    loop.call(lambda: client.publish("t", b"q2", 2))
    assert [(f, pid) for f, _, pid, _ in broker.publishes(5)] == \
        [(0x02, 1), (0x02, 2), (0x02, 3), (0x02, 4), (0x04, 5)]
    broker.sock.sendall(puback(1) + puback(2) + packet(0x50, b"\x00\x05"))  # ..., PUBREC 5
    assert read_packet(broker.sock) == (0x62, b"\x00\x05")  # PUBREL, answered by C
    # gone before PUBCOMP and before the other PUBACKs: the kept session resends them
    broker.accept(CONNACK_KEPT)
    resent = broker.publishes(2)
    assert [(f, pid, data) for f, _, pid, data in resent] == \
        [(0x0A, 3, b"q1-2"), (0x0A, 4, b"q1-3")]  # DUP, same ids, first order
    assert read_packet(broker.sock) == (0x62, b"\x00\x05")
    assert loop.call(lambda: client.inflight) == 3
    broker.sock.sendall(puback(3) + puback(4) + packet(0x70, b"\x00\x05"))  # PUBCOMP 5
    wait_until(lambda: loop.call(lambda: client.inflight) == 0)
    assert runs[0] == [1, 2] and runs[1] == [3, 4]
    loop.call(client.close)


def test_a_new_session_gets_the_unacknowledged_messages_as_new_ones(fake):
    broker, mgr, loop = fake
    client = start(loop, mgr, broker.url, reconnect_min=0.02, reconnect_max=0.05)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: [client.publish("t", b"m%d" % i, 1) for i in range(3)])
    broker.publishes(3)
    broker.sock.sendall(puback(1))
    broker.accept(CONNACK_NEW)  # the broker lost the session
    again = broker.publishes(2)
    assert [(f, pid, data) for f, _, pid, data in again] == [(0x02, 4, b"m1"), (0x02, 5, b"m2")]
    loop.call(client.close)


def test_the_session_file_keeps_released_marks(fake, tmp_path):
    broker, mgr, loop = fake
    path = str(tmp_path / "session.json")
    client = start(loop, mgr, broker.url, session_file=path, reconnect=False)
    broker.accept()
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: client.publish("t", b"a", 2))
    loop.call(lambda: client.publish("t", b"b", 1))
    broker.publishes(2)
    broker.sock.sendall(packet(0x50, b"\x00\x01"))  # PUBREC 1
    assert read_packet(broker.sock) == (0x62, b"\x00\x01")
    loop.call(client.close)
    with open(path) as f:
        saved = json.load(f)
    assert [(pid, rel) for pid, _, rel in saved["inflight"]] == [(1, True), (2, False)]
    # a new client resumes it: PUBLISH with DUP for 2, PUBREL for 1
    again = start(loop, mgr, broker.url, session_file=path, reconnect=False)
    broker.accept(CONNACK_KEPT)
    flags, _, pid, data = read_publish(broker.sock)
    assert (flags, pid, data) == (0x0A, 2, b"b")
    assert read_packet(broker.sock) == (0x62, b"\x00\x01")
    loop.call(again.close)


def test_publish_arguments_are_checked_before_anything_is_queued(fake):
    broker, mgr, loop = fake
    client = start(loop, mgr, broker.url, reconnect=False, max_queued=100)

    class Topic(str):
        pass

    def check(*args, **kwargs):
        return loop.call(lambda: client.publish(*args, **kwargs))

    with pytest.raises(TypeError):
        check(b"bytes topic", b"x")
    with pytest.raises(TypeError):
        check(["not hashable"], b"x")
    with pytest.raises(TypeError):
        check("t", None)
    with pytest.raises(ValueError):
        check("t", b"x", 3)
    with pytest.raises(ValueError):
        check("t", b"x", -1)
    with pytest.raises(TypeError):
        check("t", b"x", "1")
    with pytest.raises(ValueError):
        check("x" * 65536, b"x")
    with pytest.raises(ValueError):
        check("\u20ac" * 21846, b"x")  # 65538 bytes as UTF-8
    with pytest.raises(UnicodeEncodeError):
        check("\ud800", b"x")
    assert loop.call(lambda: client.queued) == 0
    # not connected yet: the good ones queue, in order, with their types normalised
    check(Topic("t/sub"), "text", True)
    check("t", bytearray(b"ba"), 2.0, retain=1)
    longest = "\u20ac" * 21845  # 65535 bytes as UTF-8
    check(longest, memoryview(b"mv"))
    assert loop.call(lambda: list(client.session.queue)) == [
        (b"t/sub", b"text", 1, False), (b"t", b"ba", 2, True),
        (longest.encode(), b"mv", 0, False)]
    loop.call(client.close)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory):
    mosq = Mosquitto(str(tmp_path_factory.mktemp("mosquitto-acks"))).start()
    yield mosq
    mosq.stop()


@pytest.mark.parametrize("takes_acks", [False, True], ids=["batched", "per-ack"])
def test_a_window_of_qos1_publishes_through_mosquitto(mosquitto, takes_acks):
    topic = unique("acks")
    sub = Paho(mosquitto.port, client_id="acks-sub")
    sub.sub(topic + "/#", 1)
    mgr = cm.Manager()
    loop = LoopThread(mgr).start()
    acks = []

    @cm.handles(cm.MG_EV_MQTT_CMD)
    def handler(conn, ev, data):
        if data.cmd == 4:
            acks.append(data.id)

    n = 300
    try:
        client = start(loop, mgr, "mqtt://127.0.0.1:%d" % mosquitto.port,
                       handler if takes_acks else None, client_id="acks-pub", max_queued=n)
        wait_until(lambda: loop.call(lambda: client.connected))
        loop.call(lambda: [client.publish(topic + "/x", b"%d" % i, 1) for i in range(n)])
        wait_until(lambda: loop.call(lambda: client.inflight + client.queued) == 0)
        wait_until(lambda: len(sub.messages) == n)
        assert sub.payloads() == [b"%d" % i for i in range(n)]
        assert acks == (list(range(1, n + 1)) if takes_acks else [])
        loop.call(client.close)
    finally:
        loop.stop()
        mgr.close()
        sub.stop()


@pytest.mark.parametrize("qos", [0, 1])
def test_a_retained_publish_reaches_a_later_subscriber(mosquitto, qos):
    topic = unique("retained")
    mgr = cm.Manager()
    loop = LoopThread(mgr).start()
    try:
        client = start(loop, mgr, "mqtt://127.0.0.1:%d" % mosquitto.port,
                       client_id="retain-pub-%d" % qos)
        wait_until(lambda: loop.call(lambda: client.connected))
        loop.call(lambda: client.publish(topic, b"kept", qos, retain=True))
        # mosquitto handles a connection's packets in order: once this one is
        # acknowledged, the retained message is stored
        loop.call(lambda: client.publish(topic + "/fence", b"", 1))
        wait_until(lambda: loop.call(lambda: client.inflight) == 0)
        sub = Paho(mosquitto.port)
        try:
            sub.sub(topic, 1)
            wait_until(lambda: sub.messages)
            assert [(m.payload, m.retain, m.qos) for m in sub.messages] == [(b"kept", True, qos)]
        finally:
            sub.stop()
        loop.call(client.close)
    finally:
        loop.stop()
        mgr.close()


def test_an_mqtt5_client_keeps_to_the_brokers_receive_maximum(fake):
    """MQTT-3.3.4-7: no more QoS 1/2 publishes unacknowledged than the
    Receive Maximum of the broker's CONNACK (2 here, under max_inflight)."""
    broker, mgr, loop = fake
    client = start(loop, mgr, broker.url, version=5, clean_session=True)
    broker.accept(b"\x20\x06\x00\x00\x03\x21\x00\x02")  # CONNACK, Receive Maximum 2
    wait_until(lambda: loop.call(lambda: client.connected))
    loop.call(lambda: [client.publish("t", b"%d" % i, 1) for i in range(5)])
    assert loop.call(lambda: (client.inflight, client.queued)) == (2, 3)
    sent = [read_packet(broker.sock) for _ in range(2)]
    assert [(first, body[3:5]) for first, body in sent] == [(0x32, b"\x00\x01"),
                                                             (0x32, b"\x00\x02")]
    broker.sock.sendall(puback(1))
    first, body = read_packet(broker.sock)
    assert (first, body[3:5], body[6:]) == (0x32, b"\x00\x03", b"2")
    assert loop.call(lambda: (client.inflight, client.queued)) == (2, 2)
    loop.call(client.close)
