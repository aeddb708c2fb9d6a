"""``MqttBroker`` bridges: forward topics to and from an upstream broker.

A bridge is an ``MqttClient`` of the upstream broker (MQTT 5, a kept
session, reconnect with backoff).  Its topics follow mosquitto's ``topic``
bridge lines: ``PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]``
(``""`` for an empty prefix; the direction defaults to ``out``, the QoS to
0).  ``out`` sends local messages matching ``LOCAL_PREFIX + PATTERN`` up as
``REMOTE_PREFIX + PATTERN``; ``in`` subscribes upstream to
``REMOTE_PREFIX + PATTERN`` and publishes what arrives locally, prefixes
swapped.  A message is forwarded at the lower of its QoS and the topic's.

Loops are prevented on both sides: upstream subscriptions carry MQTT 5's
No Local option, so the upstream broker never returns what the bridge
published; and a message that came in over a bridge is never sent back out
over the same bridge.  Retained flags travel both ways (Retain As
Published upstream).
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import constants as C
from ._broker_packets import topic_matches, valid_filter
from ._dispatch import handles
from .connection import Connection
from .mqtt import MQTT_PROP_SESSION_EXPIRY_INTERVAL
from .mqtt_client import MqttClient

Inject = Callable[[str, bytes, int, bool, Any], None]


class BridgeTopic(NamedTuple):
    """One ``topic`` line of a bridge."""

    pattern: str
    direction: str  # "in", "out" or "both"
    qos: int
    local_prefix: str
    remote_prefix: str


def parse_topic(spec: str) -> BridgeTopic:
    """Read a mosquitto-style bridge topic line; ``ValueError`` when it is not one."""
    words = [("" if w == '""' else w) for w in spec.split()]
    if not 1 <= len(words) <= 5 or len(words) == 4:
        raise ValueError("bridge topic %r: expected PATTERN [in|out|both [QOS "
                         "[LOCAL_PREFIX REMOTE_PREFIX]]]" % spec)
    pattern = words[0]
    direction = words[1] if len(words) > 1 else "out"
    qos = words[2] if len(words) > 2 else "0"
    local, remote = (words[3], words[4]) if len(words) == 5 else ("", "")
    if direction not in ("in", "out", "both") or qos not in ("0", "1", "2"):
        raise ValueError("bridge topic %r: bad direction or QoS" % spec)
    if not valid_filter(local + pattern) or not valid_filter(remote + pattern):
        raise ValueError("bridge topic %r: not a valid topic filter" % spec)
    return BridgeTopic(pattern, direction, int(qos), local, remote)


class Bridge:
    """One upstream connection of an ``MqttBroker`` and its topics."""

    def __init__(self, mgr: Any, url: str, topics: List[str], inject: Inject, *,
                 name: str, username: str = "", password: str = "",
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0,
                 max_queued: int = 1000) -> None:
        self.topics = [parse_topic(t) for t in topics]
        if not self.topics:
            raise ValueError("a bridge needs at least one topic")
        self.name = name
        self._inject = inject
        self._out: Dict[str, Optional[Tuple[bytes, int]]] = {}  # local topic -> remote, QoS
        #: Messages dropped because the upstream queue was full.
        self.dropped = 0
        self.client = MqttClient(
            mgr, url, self._on_event, client_id="cymongoose-bridge-" + name,
            username=username, password=password, clean_session=False, version=5,
            properties=[(MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0xFFFFFFFF)],
            reconnect_min=reconnect_min, reconnect_max=reconnect_max, max_queued=max_queued)
        for t in self.topics:
            if t.direction != "out":
                self.client.subscribe(t.remote_prefix + t.pattern, t.qos, no_local=True,
                                      retain_as_published=True)

    @property
    def connected(self) -> bool:
        """True while the upstream connection is open and its session resumed."""
        return self.client.connected

    def forwards(self, topic: str) -> bool:
        """Whether a local message on ``topic`` goes upstream (an ``out``/``both`` match)."""
        route = self._out[topic] if topic in self._out else self._route_out(topic)
        return route is not None

    def forward(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        """A local message: send it upstream when an ``out``/``both`` topic matches."""
        if topic in self._out:
            route = self._out[topic]
        else:
            route = self._route_out(topic)
        if route is None:
            return
        remote, max_qos = route
        try:
            self.client.session.publish(self.client._live_c(),
                                        (remote, data, min(qos, max_qos), retain))
        except BufferError:
            self.dropped += 1

    def _route_out(self, topic: str) -> Optional[Tuple[bytes, int]]:
        route = None
        for t in self.topics:
            if t.direction != "in" and topic.startswith(t.local_prefix) and \
                    topic_matches(t.local_prefix + t.pattern, topic):
                remote = t.remote_prefix + topic[len(t.local_prefix):]
                route = (remote.encode("utf-8"), t.qos)
                break
        if len(self._out) >= 10000:
            self._out.clear()
        self._out[topic] = route
        return route

    # Only messages: the client then folds upstream PUBACKs into one crossing.
    @handles(C.MG_EV_MQTT_MSG)
    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        topic = data.topic
        for t in self.topics:
            if t.direction != "out" and topic.startswith(t.remote_prefix) and \
                    topic_matches(t.remote_prefix + t.pattern, topic):
                local = t.local_prefix + topic[len(t.remote_prefix):]
                self._inject(local, data.data, min(data.qos, t.qos), data.retain, self)
                return

    def close(self) -> None:
        self.client.close()
