"""The MQTT examples: the client against mosquitto, the broker with paho-mqtt clients."""

import os

import pytest

from support.loop import wait_until
from support.mqtt import Mosquitto, Paho, unique
from support.subprocs import EXAMPLES, run_example

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="needs the source tree's examples/")


@pytest.fixture
def mosquitto(tmp_path):
    mosq = Mosquitto(str(tmp_path)).start()
    yield mosq
    mosq.stop()


@pytest.fixture
def paho():
    made = []

    def start(port, **kwargs):
        made.append(Paho(port, **kwargs))
        return made[-1]

    yield start
    for p in made:
        p.stop()


def test_mqtt_client_against_mosquitto(mosquitto, paho):
    topic = unique("example")
    watcher = paho(mosquitto.port)
    watcher.sub(topic, qos=1)
    out = run_example("mqtt_client.py", "--url", "mqtt://127.0.0.1:%d" % mosquitto.port,
                      "--topic", topic, "--count", "3")
    assert out.returncode == 0, out.stderr
    # The example prints what it got back through the broker ...
    assert out.stdout.splitlines() == ["%s: message %d" % (topic, i) for i in range(3)]
    # ... and an independent client saw the same publications.
    wait_until(lambda: len(watcher.payloads(topic)) == 3)
    assert watcher.payloads(topic) == [b"message 0", b"message 1", b"message 2"]


def test_mqtt_client_reports_refused_connection():
    out = run_example("mqtt_client.py", "--url", "mqtt://127.0.0.1:1", "--timeout", "5")
    assert out.returncode == 1 and out.stderr.startswith("error:")


def test_mqtt_broker_with_paho_clients(start_example, paho):
    proc, port = start_example("mqtt_broker.py", "--listen", "mqtt://127.0.0.1:0")
    sub = paho(port, client_id="subscriber")
    sub.sub("demo/#", qos=1)
    pub = paho(port, client_id="publisher")
    pub.pub("demo/a", b"qos0")
    pub.pub("demo/b", b"qos1", qos=1)
    pub.pub("other", b"not for the subscriber")
    pub.pub("demo/state", b"on", qos=1, retain=True)
    wait_until(lambda: len(sub.messages) == 3)
    assert [(m.topic, m.payload) for m in sub.messages] == [
        ("demo/a", b"qos0"), ("demo/b", b"qos1"), ("demo/state", b"on")]
    late = paho(port, client_id="late")
    late.sub("demo/state")  # the retained message is delivered on subscribing
    wait_until(lambda: late.payloads() == [b"on"])
    proc.wait_for("clients: late, publisher, subscriber")
