"""MqttClient across broker restarts, dropped and reset connections: every QoS 1
message arrives, every QoS 2 message exactly once; plus the offline queue and the
session file."""

import collections

import pytest

import cymongoose as cm
from support.loop import LoopThread, wait_until
from support.mqtt import Mosquitto
from support.relay import Relay

N = 1000  # messages per QoS level
# max_inflight stays at mosquitto's receive limit (max_inflight_messages, 20): beyond
# it, mosquitto acknowledges MQTT 3.1.1 publishes and drops them
FAST = dict(reconnect_min=0.02, reconnect_max=0.2, max_inflight=20, max_queued=2 * N)


class Stream:
    """A publisher and a subscriber MqttClient (both clean_session=False) on one Manager."""

    def __init__(self, url, drop_at=(), sub_url=None, reset_at=None):
        self.mgr = cm.Manager()
        self.got = []
        self.drop_at = drop_at  # close the subscriber's connection after so many messages
        self.reset_at = reset_at  # (count, relay): reset the relay's connections then
        self.attempts = []
        self.url = url
        self.loop = LoopThread(self.mgr).start()
        self.sub = self.loop.call(lambda: cm.MqttClient(
            self.mgr, sub_url or url, self._on_msg, client_id="stream-sub",
            on_reconnect=lambda n, delay: self.attempts.append(("sub", n, delay)), **FAST))
        self.loop.call(lambda: self.sub.subscribe("stream/#", 2))
        wait_until(lambda: self.sub.connected)
        # Connected is not subscribed: the SUBSCRIBE may still be on its way
        # (through a relay, say) when the publisher starts, and what the
        # broker routes before it reaches no one.  A message of the
        # subscriber's own, sent after its SUBSCRIBE on the same connection,
        # comes back once the broker holds the subscription.
        self.subscribed = False
        self.loop.call(lambda: self.sub.publish("stream/probe", b"", 1))
        wait_until(lambda: self.subscribed)
        self.pub = self.loop.call(lambda: cm.MqttClient(
            self.mgr, url, client_id="stream-pub",
            on_reconnect=lambda n, delay: self.attempts.append(("pub", n, delay)), **FAST))

    def _on_msg(self, conn, ev, data):
        if ev == cm.MG_EV_MQTT_MSG and data.topic == "stream/probe":
            self.subscribed = True
        elif ev == cm.MG_EV_MQTT_MSG:
            self.got.append((data.qos, data.data))
            if len(self.got) in self.drop_at:
                conn.close()  # mid-stream by construction, between two messages
            if self.reset_at and len(self.got) == self.reset_at[0]:
                relay = self.reset_at[1]
                relay.reset_all()
                # the loop waits: nothing more is read until the reset is done
                wait_until(lambda: relay.resets == 1, timeout=10)

    def publish_all(self):
        def go():
            for i in range(N):
                self.pub.publish("stream/1", b"1:%d" % i, 1)
                self.pub.publish("stream/2", b"2:%d" % i, 2)
        self.loop.call(go)

    def midway(self):
        """Wait for a tenth of the stream; True if the publisher still has messages to send."""
        wait_until(lambda: len(self.got) >= N // 10, timeout=30)
        return self.loop.call(lambda: self.pub.queued) > 0

    def check(self):
        want1 = {b"1:%d" % i for i in range(N)}
        want2 = {b"2:%d" % i for i in range(N)}
        def received(qos):
            return {d for q, d in self.got if q == qos}

        try:
            wait_until(lambda: want1 <= received(1) and want2 <= received(2), timeout=60)
        except AssertionError:
            # Say what is missing, and where each side stands, for a rare failure.
            missing1, missing2 = sorted(want1 - received(1)), sorted(want2 - received(2))
            state = self.loop.call(lambda: dict(
                sub_connected=self.sub.connected, pub_connected=self.pub.connected,
                pub_inflight=self.pub.inflight, pub_queued=self.pub.queued))
            raise AssertionError("after %d messages, %d QoS 1 missing (%s...) and %d QoS 2 "
                                 "(%s...); reconnects %s; %s"
                                 % (len(self.got), len(missing1), missing1[:5], len(missing2),
                                    missing2[:5], self.attempts, state)) from None
        wait_until(lambda: self.loop.call(lambda: self.pub.inflight + self.pub.queued) == 0)
        twice = [d for d, n in collections.Counter(d for q, d in self.got if q == 2).items()
                 if n > 1]
        assert twice == []

    def close(self):
        self.loop.call(self.pub.close)
        self.loop.call(self.sub.close)
        self.loop.stop()
        self.mgr.close()


def test_mosquitto_restarted_mid_stream(tmp_path):
    mosq = Mosquitto(str(tmp_path), persistence=True).start()
    stream = Stream("mqtt://127.0.0.1:%d" % mosq.port)
    try:
        stream.publish_all()
        assert stream.midway()
        mosq.restart()
        stream.check()
        assert {who for who, _, _ in stream.attempts} == {"pub", "sub"}
    finally:
        stream.close()
        mosq.stop()


def test_our_broker_restarted_mid_stream(tmp_path):
    store = str(tmp_path / "broker.json")
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", persistence_file=store, max_queued=2 * N)
    port = broker.port
    loop = LoopThread(mgr).start()
    stream = Stream("mqtt://127.0.0.1:%d" % port)
    try:
        stream.publish_all()
        assert stream.midway()
        loop.stop()
        broker.close()
        mgr.close()
        mgr = cm.Manager()
        broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:%d" % port, persistence_file=store,
                               max_queued=2 * N)
        loop = LoopThread(mgr).start()
        stream.check()
    finally:
        stream.close()
        loop.stop()
        mgr.close()


def test_subscriber_connection_dropped_mid_stream():
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", max_queued=2 * N)
    loop = LoopThread(mgr).start()
    stream = Stream("mqtt://127.0.0.1:%d" % broker.port, drop_at=(N // 3, N))
    try:
        stream.publish_all()
        stream.check()
        assert [n for who, n, _ in stream.attempts if who == "sub"] == [1, 1]
    finally:
        stream.close()
        loop.stop()
        mgr.close()


def test_subscriber_connection_reset_mid_stream():
    """The subscriber reaches the broker through a relay that resets both
    sides (RST, as a network drop does) while messages are in flight."""
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", max_queued=2 * N)
    loop = LoopThread(mgr).start()
    relay = Relay(broker.port)
    stream = Stream("mqtt://127.0.0.1:%d" % broker.port,
                    sub_url="mqtt://127.0.0.1:%d" % relay.port, reset_at=(N // 3, relay))
    try:
        stream.publish_all()
        try:
            stream.check()
        except AssertionError as exc:
            stats = loop.call(lambda: broker.stats)
            raise AssertionError("%s; relay resets %d; broker %s"
                                 % (exc, relay.resets, stats)) from None
        assert relay.resets == 1
        assert [n for who, n, _ in stream.attempts if who == "sub"][:1] == [1]
    finally:
        stream.close()
        relay.stop()
        loop.stop()
        mgr.close()


def test_offline_queue_is_bounded_and_sent_on_connect(tmp_path):
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    port = broker.port
    loop = LoopThread(mgr).start()
    watcher = Stream("mqtt://127.0.0.1:%d" % port)
    try:
        # nothing listens on this port yet: the client queues and keeps retrying
        client_mgr = watcher.mgr
        late = watcher.loop.call(lambda: cm.MqttClient(
            client_mgr, "mqtt://127.0.0.1:%d" % port, client_id="late", max_queued=3,
            reconnect_min=0.02, reconnect_max=0.05, session_file=str(tmp_path / "s.json")))
        for i in range(3):
            watcher.loop.call(lambda: late.publish("stream/late", b"q%d" % i, 1))
        wait_until(lambda: ("q0" and watcher.loop.call(lambda: late.inflight + late.queued) == 0))
        wait_until(lambda: {d for q, d in watcher.got} >= {b"q0", b"q1", b"q2"})
        watcher.loop.call(late.close)
        with pytest.raises(RuntimeError):
            watcher.loop.call(lambda: late.publish("stream/late", b"after close"))
    finally:
        watcher.close()
        loop.stop()
        mgr.close()
