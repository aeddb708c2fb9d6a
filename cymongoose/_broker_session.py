"""One client's session inside ``MqttBroker``: subscriptions and messages owed.

A session outlives its connection when the client asked for it
(``clean_session=0``, or an MQTT 5 Session Expiry Interval above 0).  While
the client is away, QoS 1 and 2 messages for it wait in a queue; QoS 0
messages are dropped.  On each connection at most ``max_inflight`` QoS 1/2
messages wait for their acknowledgement; the rest queue behind them.

Drop policy: a queue holds at most ``max_queued`` messages; a message that
finds it full is dropped (the newest one, as mosquitto does) and counted in
the broker's ``dropped`` statistic.
"""

from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Set

from ._broker_packets import pubrel
from ._ffi import lib
from ._mqtt_session import Message, next_pid

_DUP = 0x08
_publish = lib.cym_mqtt_publish


class Session:
    """Subscriptions, in-flight and queued messages of one client id."""

    __slots__ = ("client_id", "username", "subs", "persistent", "conn", "inflight",
                 "queue", "qos2_in", "next_pid", "max_inflight", "max_queued", "dropped",
                 "sent", "writes", "acl_epoch")

    def __init__(self, client_id: str, max_inflight: int, max_queued: int) -> None:
        self.client_id = client_id
        self.username: Optional[str] = None
        self.subs: Dict[str, int] = {}  # topic filter -> granted QoS
        self.persistent = False
        self.conn: Any = None  # the Connection while the client is connected
        # packet id -> [message, PUBREC seen]; insertion order is sending order
        self.inflight: "OrderedDict[int, List[Any]]" = OrderedDict()
        # None until a message first has to wait: an empty deque costs 760
        # bytes (CPython), more than the rest of an idle client's session.
        self.queue: Optional[Deque[Message]] = None
        self.qos2_in: Set[int] = set()  # QoS 2 ids received, PUBREL not yet seen
        self.next_pid = 0
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.dropped = 0  # messages refused by a full queue
        self.sent = 0  # PUBLISH packets written
        # the broker's ACL "write" decisions by topic, made while its
        # subscription epoch was acl_epoch; None until the first publish
        self.writes: Optional[Dict[bytes, bool]] = None
        self.acl_epoch = 0

    def deliver(self, topic: bytes, data: bytes, qos: int, retain: bool) -> None:
        """Send a message now, or queue it (QoS 1/2) when it cannot go yet."""
        conn = self.conn
        if qos == 0:
            # _write inlined: this is the per-delivery hot path of QoS 0
            if conn is not None:
                c = conn._c
                if c is not None and not conn._closing:
                    _publish(c, topic, len(topic), data, len(data), 1 if retain else 0, 0)
                    self.sent += 1
            return
        queue = self.queue
        # a non-empty queue first: under load, most messages wait there
        if queue or conn is None or len(self.inflight) >= self.max_inflight:
            if queue is None:
                queue = self.queue = deque()
            if len(queue) >= self.max_queued:
                self.dropped += 1
            else:
                queue.append((topic, data, qos, retain))
            return
        self._send_new(conn, (topic, data, qos, retain))

    def _send_new(self, conn: Any, msg: Message) -> None:
        inflight = self.inflight
        pid = self.next_pid % 0xFFFF + 1
        if pid in inflight:  # an id still in use after wrapping round
            pid = next_pid(inflight, pid)
        self.next_pid = pid
        inflight[pid] = [msg, False]
        c = conn._c  # _write inlined: the per-delivery hot path of QoS 1/2
        if c is not None and not conn._closing:
            topic, data = msg[0], msg[1]
            _publish(c, topic, len(topic), data, len(data),
                     (msg[2] << 1) | (1 if msg[3] else 0), pid)
            self.sent += 1

    def _write(self, conn: Any, topic: bytes, data: bytes, flags: int, pid: int) -> None:
        # the Connection's pointer directly: this is the per-delivery hot path
        c = conn._c
        if c is not None and not conn._closing:
            _publish(c, topic, len(topic), data, len(data), flags, pid)
            self.sent += 1

    def puback(self, pid: int) -> None:
        """PUBACK from the client (``acked(4, pid)``, in fewer steps)."""
        if self.inflight.pop(pid, None) is not None and self.queue:
            self.pump()

    def pubacks(self, packets: bytes) -> None:
        """PUBACKs in a row from the client, 4 bytes each (id in the last two)."""
        pop = self.inflight.pop
        for i in range(2, len(packets), 4):
            pop((packets[i] << 8) | packets[i + 1], None)
        if self.queue:
            self.pump()

    def acked(self, cmd: int, pid: int) -> None:
        """PUBACK (4), PUBREC (5) or PUBCOMP (7) from the client."""
        entry = self.inflight.get(pid)
        if entry is None:
            return
        if cmd == 5:
            entry[1] = True  # the C parser has answered with PUBREL
            return
        del self.inflight[pid]
        if self.queue:
            self.pump()

    def pump(self) -> None:
        """Move queued messages into the in-flight window."""
        conn, queue = self.conn, self.queue
        if conn is None or not queue:
            return
        inflight, room, send = self.inflight, self.max_inflight, self._send_new
        while queue and len(inflight) < room:
            send(conn, queue.popleft())

    def attach(self, conn: Any) -> None:
        """A connection takes the session: resend what is unacknowledged, in order."""
        self.conn = conn
        for pid, (msg, released) in self.inflight.items():
            if released:
                conn.send(pubrel(pid))
            else:
                self._write(conn, msg[0], msg[1], _DUP | (msg[2] << 1) | (1 if msg[3] else 0),
                            pid)
        self.pump()

    def detach(self) -> None:
        """The connection ended; a clean session forgets everything."""
        self.conn = None
        if not self.persistent:
            self.inflight.clear()
            self.queue = None
            self.qos2_in.clear()
