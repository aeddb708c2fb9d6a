"""MqttBroker passwords, ACLs, limits and $SYS statistics, with paho and raw peers."""

import logging
import socket
import subprocess

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import cymongoose as cm
from cymongoose._broker_auth import check_password, load_password_file
from support.loop import LoopThread, wait_until
from support.mqtt import (MOSQUITTO_PASSWD, Paho, closed_by_peer, connect_packet,
                          disconnect_and_stop, mqtt_string, packet, recv_exact)


@pytest.fixture
def serve():
    """Start an MqttBroker with options, polled on a thread: returns the broker."""
    running = []

    def start(**options):
        mgr = cm.Manager()
        b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", **options)
        running.append((mgr, LoopThread(mgr).start()))
        return b

    yield start
    for mgr, loop in running:
        loop.stop()
        mgr.close()


def connack_code(port, username=None, password=None, protocol=paho.MQTTv311):
    """The CONNACK reason paho gets."""
    got = []
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    if username is not None:
        c.username_pw_set(username, password)
    c.on_connect = lambda client, userdata, flags, reason, props: got.append(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        wait_until(lambda: got)
    finally:
        disconnect_and_stop(c)
    return got[0].value


def password_file(tmp_path, algorithm):
    path = tmp_path / "passwords"
    path.write_text("")
    subprocess.run([MOSQUITTO_PASSWD, "-H", algorithm, "-b", str(path), "alice", "s3cret"],
                   check=True, timeout=10)
    return str(path)


@pytest.mark.parametrize("algorithm", ["sha512-pbkdf2", "sha512"])
def test_mosquitto_password_file(tmp_path, serve, caplog, algorithm):
    path = password_file(tmp_path, algorithm)
    assert check_password(load_password_file(path)["alice"], b"s3cret")
    b = serve(password_file=path)
    assert connack_code(b.port, "alice", "s3cret") == 0
    with caplog.at_level(logging.WARNING, "cymongoose.broker"):
        assert connack_code(b.port, "alice", "wrong") == 134  # bad user name or password
        assert connack_code(b.port, "mallory", "s3cret") == 134
        assert connack_code(b.port) == 135  # anonymous: not authorized
    assert sum("bad credentials" in r.getMessage() for r in caplog.records) == 3
    # MQTT 3.1.1 codes on the wire
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        sock.sendall(packet(0x10, mqtt_string("MQTT") + b"\x04\xc2\x00\x00" + mqtt_string("x")
                            + mqtt_string("alice") + mqtt_string("nope")))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x04"
        assert closed_by_peer(sock)
    finally:
        sock.close()


def test_a_bad_password_file_line_is_named(tmp_path):
    path = tmp_path / "passwords"
    path.write_text("alice:plaintext\n")
    with pytest.raises(ValueError, match="passwords:1"):
        load_password_file(str(path))


def test_authenticate_callback_with_mqtt5(serve):
    seen = []

    def authenticate(client_id, username, password):
        seen.append((username, password))
        return password == b"ok"

    b = serve(authenticate=authenticate)
    assert connack_code(b.port, "u", "ok", paho.MQTTv5) == 0
    assert connack_code(b.port, "u", "no", paho.MQTTv5) == 0x86
    assert seen == [("u", b"ok"), ("u", b"no")]


ACL = """\
# anonymous clients may only read public topics
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret

pattern write devices/%c/status
"""


def test_acl_file_refuses_subscriptions_and_publishes(tmp_path, serve, caplog):
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    users = {"alice": "pw"}
    b = serve(acl_file=str(acl), authenticate=lambda c, u, p: users.get(u) == (p or b"").decode(),
              allow_anonymous=True)
    alice = Paho(b.port, client_id="dev1", username="alice", password="pw")
    anon = Paho(b.port, client_id="anon")
    with caplog.at_level(logging.WARNING, "cymongoose.broker"):
        codes = []
        alice.c.on_subscribe = lambda c, u, mid, reasons, props: codes.append(
            [r.value for r in reasons])
        alice.c.subscribe([("sensors/#", 1), ("sensors/secret", 1), ("other/#", 0)])
        wait_until(lambda: codes)
        assert codes == [[1, 0x80, 0x80]]
        anon.sub("public/#", 0)
        alice.pub("devices/dev1/status", b"up", 1)  # allowed by the pattern
        alice.pub("devices/dev2/status", b"spoof", 1)  # refused: not her client id
        anon.pub("sensors/t", b"anon write", 1)  # refused: anonymous may only read
        alice.pub("public/news", b"hello", 1)  # refused: alice has no rule for it
        alice.pub("sensors/t", b"21", 1)
    wait_until(lambda: alice.messages)
    assert [(m.topic, m.payload) for m in alice.messages] == [("sensors/t", b"21")]
    assert anon.messages == []
    text = [r.getMessage() for r in caplog.records]
    assert sum("denied by the ACL" in t for t in text) == 5
    alice.stop()
    anon.stop()


def test_acl_callback_filters_deliveries(serve):
    def acl(client_id, username, topic, access):
        return not (access == "read" and client_id == "blind" and topic.endswith("/hidden"))

    b = serve(acl=acl)
    blind = Paho(b.port, client_id="blind")
    blind.sub("a/#", 0)
    pub = Paho(b.port, client_id="pub")
    pub.pub("a/hidden", b"no", 0)
    pub.pub("a/seen", b"yes", 0)
    wait_until(lambda: blind.messages)
    assert blind.payloads() == [b"yes"]
    blind.stop()
    pub.stop()


def test_max_connections_answers_server_unavailable(serve, caplog):
    b = serve(max_connections=1)
    first = Paho(b.port, client_id="one")
    with caplog.at_level(logging.WARNING, "cymongoose.broker"):
        assert connack_code(b.port) == 136  # server unavailable
    assert any("max_connections" in r.getMessage() for r in caplog.records)
    first.stop()


def test_oversize_packet_closes_only_that_connection(serve, caplog):
    b = serve(max_packet_size=1024)
    good = Paho(b.port, client_id="good")
    good.sub("big", 0)
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        sock.sendall(connect_packet("big"))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
        with caplog.at_level(logging.WARNING, "cymongoose.broker"):
            # only the header is sent: the announced length is enough to refuse
            sock.sendall(b"\x30\x80\x80\x04")
            assert closed_by_peer(sock)
        assert any("too large" in r.getMessage() for r in caplog.records)
    finally:
        sock.close()
    good.pub("big", b"x" * 1000, 0)
    wait_until(lambda: good.messages)
    good.stop()


def test_sys_statistics(serve):
    b = serve(sys_interval=0.05)
    watcher = Paho(b.port, client_id="sys")
    watcher.sub("$SYS/broker/#", 0)
    wait_until(lambda: watcher.payloads("$SYS/broker/clients/connected") and
               watcher.payloads("$SYS/broker/clients/connected")[-1] == b"1")
    topics = {m.topic for m in watcher.messages}
    assert {"$SYS/broker/messages/received", "$SYS/broker/messages/sent",
            "$SYS/broker/uptime", "$SYS/broker/subscriptions/count"} <= topics
    assert b.retained == {}
    watcher.stop()
