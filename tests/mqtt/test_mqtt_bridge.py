"""MqttBroker bridged to a real mosquitto: both directions, no loops, reconnect."""

import pytest

import cymongoose as cm
from cymongoose._broker_bridge import parse_topic
from support.loop import LoopThread, wait_until
from support.mqtt import Mosquitto, Paho


@pytest.fixture
def setup(tmp_path):
    mosq = Mosquitto(str(tmp_path)).start()
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    bridge = broker.add_bridge("mqtt://127.0.0.1:%d" % mosq.port,
                               ["up/# out 1", "down/# in 1", "both/# both 1",
                                "x/# in 1 local/ remote/"],
                               name="gw", reconnect_min=0.02, reconnect_max=0.2)
    loop = LoopThread(mgr).start()
    local = Paho(broker.port, client_id="local")
    local.sub("#", 1)
    upstream = Paho(mosq.port, client_id="upstream")
    upstream.sub("#", 1)
    yield mosq, bridge, loop, local, upstream
    local.stop()
    upstream.stop()
    loop.stop()
    broker.close()
    mgr.close()
    mosq.stop()


def ready(loop, bridge, local, upstream, marker):
    """Wait until the bridge's upstream subscriptions are active (a retained probe comes in)."""
    wait_until(lambda: loop.call(lambda: bridge.connected))
    upstream.pub("down/ready", marker, 1, retain=True)
    wait_until(lambda: marker in local.payloads("down/ready"))


def counts(p, topic):
    return len(p.payloads(topic))


def test_bridge_carries_both_ways_without_loops_and_survives_a_restart(setup):
    mosq, bridge, loop, local, upstream = setup
    for round_ in (b"1", b"2"):
        ready(loop, bridge, local, upstream, b"ready" + round_)
        local.pub("up/a", b"to upstream " + round_, 1)
        upstream.pub("down/b", b"to local " + round_, 1)
        local.pub("both/c", b"local both " + round_, 1)
        upstream.pub("both/d", b"upstream both " + round_, 1)
        upstream.pub("remote/x/e", b"prefixed " + round_, 1)
        wait_until(lambda: round_ in b"".join(upstream.payloads("up/a")[-1:]))
        wait_until(lambda: (b"to local " + round_) in local.payloads("down/b"))
        wait_until(lambda: (b"local both " + round_) in upstream.payloads("both/c"))
        wait_until(lambda: (b"upstream both " + round_) in local.payloads("both/d"))
        wait_until(lambda: (b"prefixed " + round_) in local.payloads("local/x/e"))
        # markers through both sides: anything looping would have come back by now
        local.pub("up/end", round_, 1)
        upstream.pub("down/end", round_, 1)
        wait_until(lambda: round_ in upstream.payloads("up/end") and
                   round_ in local.payloads("down/end"))
        for p, topic in ((upstream, "both/c"), (local, "both/c"), (upstream, "both/d"),
                         (local, "both/d"), (upstream, "up/a"), (local, "down/b")):
            assert p.payloads(topic).count(p.payloads(topic)[-1]) == 1, (topic, p.payloads(topic))
        assert upstream.payloads("down/b").count(b"to local " + round_) == 1  # its own, once
        assert local.payloads("up/a").count(b"to upstream " + round_) == 1
        if round_ == b"1":
            upstream.c.loop_stop()
            mosq.restart()  # no persistence: the bridge must subscribe again
            upstream = Paho(mosq.port, client_id="upstream")
            upstream.sub("#", 1)
    upstream.stop()
    assert bridge.dropped == 0


def test_a_burst_goes_upstream_once_each_and_leaves_nothing_in_flight(setup):
    """Hundreds of QoS 1 messages at once: upstream PUBACKs arrive in runs, which the
    bridge's client folds into one event (its handler takes only messages)."""
    mosq, bridge, loop, local, upstream = setup
    ready(loop, bridge, local, upstream, b"burst")
    infos = [local.c.publish("up/burst", b"%d" % i, 1) for i in range(500)]
    for info in infos:
        info.wait_for_publish(10)
    want = [b"%d" % i for i in range(500)]
    wait_until(lambda: len(upstream.payloads("up/burst")) >= 500, timeout=20)
    assert sorted(upstream.payloads("up/burst"), key=int) == want
    wait_until(lambda: loop.call(lambda: bridge.client.inflight + bridge.client.queued) == 0)
    assert bridge.dropped == 0


@pytest.mark.parametrize("spec, want", [
    ("a/#", ("a/#", "out", 0, "", "")),
    ("a/# both 2", ("a/#", "both", 2, "", "")),
    ('# in 1 "" remote/', ("#", "in", 1, "", "remote/")),
])
def test_bridge_topic_lines(spec, want):
    assert tuple(parse_topic(spec)) == want


@pytest.mark.parametrize("spec", ["", "a/# sideways", "a/# in 3", "a/# in 1 onlyone",
                                  "a/#/b"])
def test_bad_bridge_topic_lines(spec):
    with pytest.raises(ValueError):
        parse_topic(spec)
