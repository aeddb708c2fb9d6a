"""Our MQTT client against a real mosquitto broker, and with paho-mqtt peers."""

import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import cymongoose as cm
from cymongoose import mqtt
from support.fixtures import made
from support.loop import LoopThread, wait_until
from support.mqtt import Client, Mosquitto, Paho, unique

PUBACK, PUBCOMP, SUBACK, UNSUBACK, PINGRESP = 4, 7, 9, 11, 13


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    mosq = Mosquitto(str(tmp_path_factory.mktemp("mosquitto"))).start()
    yield mosq
    mosq.stop()


@pytest.fixture(scope="module")
def locked_broker(tmp_path_factory):
    """A mosquitto that lets in only the user alice (password s3cret)."""
    mosq = Mosquitto(str(tmp_path_factory.mktemp("locked")), users={"alice": "s3cret"}).start()
    yield mosq
    mosq.stop()


@pytest.fixture
def url(broker):
    return "mqtt://127.0.0.1:%d" % broker.port


@pytest.fixture
def client(url):
    """Start our clients with ``client(**mqtt_connect_kwargs)``; all close at teardown."""
    yield from made(lambda **kwargs: Client(kwargs.pop("url", url), **kwargs), Client.close)


@pytest.fixture
def peer(broker):
    """Start paho clients with ``peer(**kwargs)``; all stop at teardown."""
    yield from made(lambda **kwargs: Paho(broker.port, **kwargs), Paho.stop)


def test_connack_then_cmd(client):
    c = client().wait_open()
    assert c.cmds[0] == (2, 0)  # MQTT_OPEN(0) came first, then MQTT_CMD(CONNACK)
    assert c.errors == []


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_and_receive_at_qos(client, qos):
    c = client().wait_open()
    topic = unique() + "/q"
    c.sub(topic, qos)
    pid = c.pub(topic, b"hello \x00 world", qos)
    wait_until(lambda: c.messages)
    msg = c.messages[0]
    assert (msg.topic, msg.data, msg.qos, msg.retain) == (topic, b"hello \x00 world", qos, False)
    if qos == 0:
        assert pid == 0 and msg.id == 0
    else:
        assert 0 < pid < 65536 and msg.id > 0
        # the broker acknowledged our PUBLISH: PUBACK for 1, PUBREC/PUBREL/PUBCOMP for 2
        wait_until(lambda: c.has_cmd(PUBACK if qos == 1 else PUBCOMP, pid))


def test_message_view_fields(client):
    c = client().wait_open()
    topic = unique() + "/fields"
    c.sub(topic, 1)
    c.pub(topic, b"caf\xe9 \x00!", 1)
    c.pub(topic, "ünï", 0)
    wait_until(lambda: len(c.messages) == 2)
    first, second = c.messages
    assert (first.topic, first.cmd, first.qos, first.ack) == (topic, 3, 1, 0)
    assert first.id > 0 and second.id == 0
    assert first.text == "caf\udce9 \x00!"  # not UTF-8: surrogateescape
    assert (second.data, second.text) == ("ünï".encode(), "ünï")
    assert c.connack_ack == 0


def test_username_and_password_reach_the_broker(client, locked_broker):
    url = "mqtt://127.0.0.1:%d" % locked_broker.port
    alice = client(url=url, client_id="alice-1", username="alice", password="s3cret").wait_open()
    topic = unique() + "/auth"
    alice.sub(topic)
    alice.pub(topic, b"in")
    wait_until(lambda: alice.messages)
    for kwargs in ({"username": "alice", "password": "wrong"}, {}):
        refused = client(url=url, **kwargs)
        assert refused.closed.wait(5)
        # CONNACK 5, "not authorised": the code as MQTT_OPEN data and as MqttMessage.ack
        assert (refused.connack, refused.connack_ack) == (5, 5)
        assert refused.messages == []


def test_explicit_ping_gets_pingresp(client):
    # keepalive=0: the client never pings by itself, so every PINGRESP answers mqtt_ping()
    c = client(keepalive=0).wait_open()
    for n in (1, 2, 3):
        c.call(c.conn.mqtt_ping)
        wait_until(lambda: sum(1 for cmd, _ in c.cmds if cmd == PINGRESP) == n)


def test_thousand_messages_in_order(client):
    c = client().wait_open()
    topic = unique() + "/seq"
    c.sub(topic, 1)

    def burst():
        for i in range(1000):
            c.conn.mqtt_pub(topic, b"%d" % i, 1)

    c.call(burst)
    wait_until(lambda: len(c.messages) >= 1000, 30)
    assert [m.data for m in c.messages] == [b"%d" % i for i in range(1000)]
    assert len(c.messages) == 1000


def test_unsubscribe_stops_delivery(client):
    c = client().wait_open()
    base = unique()
    c.sub(base + "/a")
    c.sub(base + "/marker")
    c.pub(base + "/a", b"1")
    wait_until(lambda: c.topics() == [base + "/a"])
    c.call(lambda: c.conn.mqtt_unsub(base + "/a"))
    wait_until(lambda: c.has_cmd(UNSUBACK))
    c.pub(base + "/a", b"2")
    c.pub(base + "/marker", b"end")
    # the broker handles one connection's packets in order: once the marker is
    # back, a delivery of the second message would have arrived before it
    wait_until(lambda: base + "/marker" in c.topics())
    assert [m.data for m in c.messages] == [b"1", b"end"]


def test_retained_message_reaches_late_subscriber(client):
    topic = unique() + "/retained"
    first = client().wait_open()
    pid = first.pub(topic, b"kept", 1, retain=True)
    wait_until(lambda: first.has_cmd(PUBACK, pid))
    late = client().wait_open()
    late.sub(topic, 1)
    wait_until(lambda: late.messages)
    assert (late.messages[0].data, late.messages[0].retain) == (b"kept", True)
    # an empty retained message clears it: the next subscriber gets nothing
    pid = first.pub(topic, b"", 1, retain=True)
    wait_until(lambda: first.has_cmd(PUBACK, pid))
    third = client().wait_open()
    third.sub(topic, 1)
    third.sub(topic + "/marker")
    third.pub(topic + "/marker", b"x")
    wait_until(lambda: third.messages)
    assert third.topics() == [topic + "/marker"]


def test_will_reaches_paho_when_socket_dies(client, peer):
    topic = unique() + "/will"
    watcher = peer()
    watcher.sub(topic, 1)
    c = client(will_topic=topic, will_message=b"gone", will_qos=1, will_retain=False,
               keepalive=30).wait_open()
    c.call(c.conn.close)  # no DISCONNECT: the broker sees the socket die
    assert c.closed.wait(5)
    wait_until(lambda: watcher.payloads(topic))
    msg = watcher.messages[0]
    assert (msg.payload, msg.qos, msg.retain) == (b"gone", 1, False)


def test_idle_client_with_keepalive_stays_connected(client):
    # mosquitto drops a client silent for 1.5 keep-alive periods (3 s here):
    # only the client's own PINGREQs keep this one connected for 10 s.
    c = client(keepalive=2).wait_open()
    assert not c.closed.wait(10)
    pongs = [cmd for cmd, _ in c.cmds if cmd == PINGRESP]
    assert len(pongs) >= 5, c.cmds
    assert c.errors == []
    topic = unique() + "/alive"
    c.sub(topic)
    c.pub(topic, b"still here")
    wait_until(lambda: c.messages)


def test_unanswered_ping_fails_with_error(client):
    # A "broker" that accepts CONNECT and then ignores everything.
    mgr = cm.Manager()

    def mute(conn, ev, data):
        if ev == cm.MG_EV_MQTT_CMD and data.cmd == 1:
            conn.send(b"\x20\x02\x00\x00")

    port = mgr.mqtt_listen("mqtt://127.0.0.1:0", mute).local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        c = client(url="mqtt://127.0.0.1:%d" % port, keepalive=1).wait_open()
        assert c.closed.wait(5)
        assert c.errors == ["MQTT keep-alive timeout"]
    finally:
        loop.stop()
        mgr.close()


def test_v5_properties_from_paho(client, peer):
    topic = unique() + "/v5"
    c = client(version=5).wait_open()
    c.sub(topic, 1)
    sender = peer(protocol=paho.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    props.ResponseTopic = topic + "/reply"
    props.CorrelationData = b"corr-1"
    props.PayloadFormatIndicator = 1
    props.UserProperty = [("colour", "blue"), ("size", "L")]
    sender.pub(topic, b"payload", 1, properties=props)
    sender.pub(topic, b"x", 0, properties=props)
    # Without properties, Mongoose 7.23 alone would read these as b"\0y", b"\0".
    sender.pub(topic, b"y", 0)
    sender.pub(topic, b"", 0)
    wait_until(lambda: len(c.messages) == 4)
    assert [m.data for m in c.messages] == [b"payload", b"x", b"y", b""]
    assert c.messages[2].properties == c.messages[3].properties == []
    for msg in c.messages[:2]:
        got = {(p["id"], p["iv"], p["key"], p["val"]) for p in msg.properties}
        assert got == {
            (mqtt.MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1, "", ""),
            (mqtt.MQTT_PROP_CONTENT_TYPE, 0, "", "text/plain"),
            (mqtt.MQTT_PROP_RESPONSE_TOPIC, 0, "", topic + "/reply"),
            (mqtt.MQTT_PROP_CORRELATION_DATA, 0, "", "corr-1"),
            (mqtt.MQTT_PROP_USER_PROPERTY, 0, "colour", "blue"),
            (mqtt.MQTT_PROP_USER_PROPERTY, 0, "size", "L"),
        }


def test_v5_properties_to_paho(client, peer):
    topic = unique() + "/v5out"
    receiver = peer(protocol=paho.MQTTv5)
    receiver.sub(topic, 1)
    c = client(version=5).wait_open()
    c.pub(topic, "ünï", 1, properties=[
        (mqtt.MQTT_PROP_CONTENT_TYPE, "text/plain; charset=utf-8"),
        (mqtt.MQTT_PROP_USER_PROPERTY, ("k", "v")),
        (mqtt.MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 3600),
    ])
    wait_until(lambda: receiver.messages)
    msg = receiver.messages[0]
    assert msg.payload == "ünï".encode()
    assert msg.properties.ContentType == "text/plain; charset=utf-8"
    assert msg.properties.UserProperty == [("k", "v")]
    assert 0 < msg.properties.MessageExpiryInterval <= 3600


def test_v5_connect_properties_reach_broker(client):
    # A session expiry interval in CONNECT keeps the session after the
    # connection ends: the next CONNACK then reports "session present".
    cid = "cym-" + unique("s").replace("/", "-")
    props = [(mqtt.MQTT_PROP_SESSION_EXPIRY_INTERVAL, 300)]
    first = client(version=5, client_id=cid, clean_session=False,
                   properties=props).wait_open()
    first.sub(unique() + "/s", 1)
    first.call(first.conn.mqtt_disconnect)
    assert first.closed.wait(5)
    second = client(version=5, client_id=cid, clean_session=False,
                    properties=props).wait_open()
    wait_until(lambda: second.has_cmd(2))
    assert second.connack_packet[2] & 1, "CONNACK session-present flag not set"


def test_exchange_with_paho_both_directions(client, peer):
    base = unique()
    other = peer()
    other.sub(base + "/to-paho", 1)
    c = client().wait_open()
    c.sub(base + "/to-us", 1)
    c.pub(base + "/to-paho", b"from cymongoose", 1)
    other.pub(base + "/to-us", b"from paho", 1)
    wait_until(lambda: other.messages and c.messages)
    assert other.payloads() == [b"from cymongoose"]
    assert [(m.topic, m.data, m.qos) for m in c.messages] == [(base + "/to-us", b"from paho", 1)]


# -- bad input ---------------------------------------------------------------


def test_bad_topic_type(client):
    c = client().wait_open()

    def attempts():
        errors = []
        for call in (lambda: c.conn.mqtt_pub(b"t", b"x"),
                     lambda: c.conn.mqtt_pub(None, b"x"),
                     lambda: c.conn.mqtt_pub(42, b"x"),
                     lambda: c.conn.mqtt_sub(b"t"),
                     lambda: c.conn.mqtt_unsub(["t"])):
            with pytest.raises(TypeError, match="topic"):
                call()
            errors.append(1)
        return errors

    assert len(c.call(attempts)) == 5


@pytest.mark.parametrize("qos", [-1, 3, 255, 256, 2**70])
def test_bad_qos(client, qos):
    c = client().wait_open()
    with pytest.raises(ValueError, match="qos"):
        c.call(lambda: c.conn.mqtt_pub("t", b"x", qos))
    with pytest.raises(ValueError, match="qos"):
        c.call(lambda: c.conn.mqtt_sub("t", qos))
    with pytest.raises(TypeError):
        c.call(lambda: c.conn.mqtt_pub("t", b"x", "1"))


def test_calls_on_closed_connection_raise(client):
    c = client().wait_open()
    c.call(c.conn.close)
    assert c.closed.wait(5)
    for name, args in (("mqtt_pub", ("t", b"x")), ("mqtt_sub", ("t",)), ("mqtt_unsub", ("t",)),
                       ("mqtt_ping", ()), ("mqtt_pong", ()), ("mqtt_disconnect", ())):
        with pytest.raises(RuntimeError, match="Connection has been closed"):
            getattr(c.conn, name)(*args)
    with pytest.raises(RuntimeError, match="Connection has been closed"):
        cm.Connection().mqtt_pub("t", b"x")


def test_bad_connect_arguments(url):
    with cm.Manager() as mgr:
        with pytest.raises(TypeError):
            mgr.mqtt_connect(url.encode())
        with pytest.raises(RuntimeError, match="Failed to connect to MQTT broker ''"):
            mgr.mqtt_connect("")
        with pytest.raises(OverflowError):
            mgr.mqtt_connect(url, keepalive=65536)
        with pytest.raises(TypeError):
            mgr.mqtt_connect(url, keepalive="60")
        with pytest.raises(TypeError, match="client_id"):
            mgr.mqtt_connect(url, client_id=b"me")
        with pytest.raises(ValueError, match="version"):
            mgr.mqtt_connect(url, version=3)
        with pytest.raises(ValueError, match="version=5"):
            mgr.mqtt_connect(url, properties=[(mqtt.MQTT_PROP_SESSION_EXPIRY_INTERVAL, 1)])
        with pytest.raises(ValueError, match="unknown MQTT 5 property"):
            mgr.mqtt_connect(url, version=5, properties=[(0x7F, 1)])
        with pytest.raises(OverflowError):
            mgr.mqtt_connect(url, version=5, properties=[(mqtt.MQTT_PROP_RECEIVE_MAXIMUM, 70000)])
        with pytest.raises(TypeError):
            mgr.mqtt_connect(url, version=5, properties=[(mqtt.MQTT_PROP_USER_PROPERTY, "x")])
        with pytest.raises(ValueError, match="will_qos"):
            mgr.mqtt_connect(url, will_topic="w", will_qos=3)
        with pytest.raises(ValueError, match="will_topic"):
            mgr.mqtt_connect(url, will_message=b"orphan")
        with pytest.raises(ValueError, match="will_topic"):
            mgr.mqtt_connect(url, will_topic="")
        assert mgr.connections == ()  # nothing was created by the failed calls
    with pytest.raises(RuntimeError, match="freed"):
        mgr.mqtt_connect(url)


def test_bad_publish_sizes_and_properties(client):
    c = client().wait_open()
    with pytest.raises(ValueError, match="65535"):
        c.call(lambda: c.conn.mqtt_pub("t" * 65536, b"x"))
    with pytest.raises(ValueError, match="MQTT 5"):
        c.call(lambda: c.conn.mqtt_pub("t", b"x", properties=[(mqtt.MQTT_PROP_CONTENT_TYPE, "a")]))
    # the connection is still usable after the refusals
    topic = unique() + "/ok"
    c.sub(topic)
    c.pub(topic, b"fine")
    wait_until(lambda: c.messages)


def test_malformed_packet_from_broker_fails_with_error(client):
    # A "broker" that answers CONNECT with a packet whose remaining length
    # runs over four bytes: malformed.
    mgr = cm.Manager()
    done = threading.Event()

    def evil(conn, ev, data):
        if ev == cm.MG_EV_MQTT_CMD and data.cmd == 1:
            conn.send(b"\x20\x02\x00\x00" + b"\x30\xff\xff\xff\xff\x01")
            done.set()

    port = mgr.mqtt_listen("mqtt://127.0.0.1:0", evil).local_addr[1]
    loop = LoopThread(mgr).start()
    try:
        c = client(url="mqtt://127.0.0.1:%d" % port).wait_open()
        assert c.closed.wait(5)
        assert c.errors == ["MQTT malformed packet"]
        assert done.is_set()
    finally:
        loop.stop()
        mgr.close()
