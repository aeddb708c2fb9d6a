"""One client's session inside ``MqttBroker``: subscriptions and messages owed.

A session outlives its connection when the client asked for it
(``clean_session=0``, or an MQTT 5 Session Expiry Interval above 0).  While
the client is away, QoS 1 and 2 messages for it wait in a queue; QoS 0
messages are dropped.  On each connection at most ``max_inflight`` QoS 1/2
messages wait for their acknowledgement; the rest queue behind them.

While the client is connected, those messages (in flight and queued) are
held by the broker's C engine (``_csrc/mqtt_broker.c``), which also takes
the client's PUBACK, PUBREC and PUBCOMP and moves the queue along; when the
connection ends, the session takes them back, in order, for the next one.

Drop policy: a queue holds at most ``max_queued`` messages; a message that
finds it full is dropped (the newest one, as mosquitto does) and counted in
the broker's ``dropped`` statistic.
"""

import time
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

from ._ffi import ffi, lib

#: A message a session holds: topic, payload, QoS, retain, the MQTT 5
#: properties passed on, and the wall-clock ms it expires (0: never).
Message = Tuple[bytes, bytes, int, bool, bytes, int]

_deliver = lib.cym_bsess_deliver


class Session:
    """Subscriptions, in-flight and queued messages of one client id."""

    __slots__ = ("client_id", "username", "subs", "persistent", "expiry", "left_at", "conn",
                 "inflight", "queue", "qos2_in", "next_pid", "max_inflight", "max_queued",
                 "dropped", "sent", "writes", "acl_epoch", "engine")

    def __init__(self, client_id: str, max_inflight: int, max_queued: int) -> None:
        self.client_id = client_id
        self.username: Optional[str] = None
        # topic filter -> granted QoS | NO_LOCAL | RETAIN_AS_PUBLISHED
        self.subs: Dict[str, int] = {}
        self.persistent = False
        #: Seconds a persistent session outlives its connection (MQTT 5's
        #: Session Expiry Interval); None: until the client cleans it.
        self.expiry: Optional[int] = None
        self.left_at = 0.0  # time.monotonic() when its connection ended
        self.conn: Any = None  # the Connection while the client is connected
        # While no connection holds the session: packet id -> [message, PUBREC
        # seen] in sending order, and the messages behind them.
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
        #: The C engine's ``struct cym_bsess *`` while connected, else None.
        self.engine: Any = None

    def deliver(self, topic: bytes, data: bytes, qos: int, retain: bool, props: bytes = b"",
                expire_at: int = 0) -> None:
        """Send a message now, or queue it (QoS 1/2) when it cannot go yet;
        ``props`` and ``expire_at`` as in ``Message``."""
        engine = self.engine
        if engine is not None:
            _deliver(engine, topic, len(topic), data, len(data), qos, 1 if retain else 0,
                     props, len(props), expire_at)
            return
        if qos == 0:
            return  # QoS 0 is not kept for an absent client
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        if len(queue) >= self.max_queued:
            self.dropped += 1
        else:
            queue.append((topic, data, qos, retain, props, expire_at))

    def attach(self, conn: Any, max_packet: int = 0) -> bool:
        """A connection takes the session: resend what is unacknowledged, in order.

        ``max_packet``: the largest packet the client takes (MQTT 5); bigger
        messages are dropped for it.  False when the C engine cannot take it
        (out of memory, or the connection is closing already).
        """
        engine = lib.cym_bsess_attach(conn._c, self.max_inflight, self.max_queued,
                                      self.next_pid, max_packet)
        if engine == ffi.NULL:
            return False
        self.conn, self.engine = conn, engine
        inflight, queue = self.inflight, self.queue
        self.inflight, self.queue = OrderedDict(), None
        for pid, (msg, released) in inflight.items():
            topic, data, props = msg[0], msg[1], msg[4]
            if lib.cym_bsess_resume(engine, pid, topic, len(topic), data, len(data),
                                    (msg[2] << 1) | (1 if msg[3] else 0),
                                    1 if released else 0, props, len(props), msg[5]) != 0:
                self.dropped += 1
        for msg in queue or ():
            self.deliver(*msg)
        return True

    def detach(self) -> None:
        """The connection ended; a clean session forgets everything.

        The broker clears the engine's cached routes first: they point at
        the records freed here.
        """
        engine, self.engine, self.conn = self.engine, None, None
        self.left_at = time.monotonic()
        if engine is not None:
            try:
                sent, dropped, _, _, self.next_pid = _stats(engine)
                self.sent += sent
                self.dropped += dropped
                self.inflight, queue = _held(engine)
                self.queue = queue or None
            finally:
                lib.cym_bsess_free(engine)
        if not self.persistent:
            self.inflight.clear()
            self.queue = None
            self.qos2_in.clear()

    def expired(self, now: float) -> bool:
        """Whether the session, without a connection, has outlived its expiry."""
        return self.conn is None and self.expiry is not None and now - self.left_at >= self.expiry

    def counts(self) -> Tuple[int, int, int, int]:
        """Messages sent, dropped, in flight and queued."""
        if self.engine is None:
            return self.sent, self.dropped, len(self.inflight), len(self.queue or ())
        sent, dropped, inflight, queued, _ = _stats(self.engine)
        return self.sent + sent, self.dropped + dropped, inflight, queued

    def snapshot(self) -> Tuple["OrderedDict[int, List[Any]]", Deque[Message], int]:
        """Copies of the messages in flight and queued, and the last packet id."""
        if self.engine is None:
            return OrderedDict(self.inflight), deque(self.queue or ()), self.next_pid
        inflight, queue = _held(self.engine)
        return inflight, queue, _stats(self.engine)[4]


def _stats(engine: Any) -> Tuple[int, int, int, int, int]:
    out = ffi.new("uint64_t[5]")
    lib.cym_bsess_stats(engine, out)
    return int(out[0]), int(out[1]), int(out[2]), int(out[3]), int(out[4])


def _held(engine: Any) -> Tuple["OrderedDict[int, List[Any]]", Deque[Message]]:
    """The engine's messages: in flight by packet id, then those queued."""
    inflight: "OrderedDict[int, List[Any]]" = OrderedDict()
    queue: Deque[Message] = deque()
    item = ffi.new("struct cym_bitem *")
    n_inflight = _stats(engine)[2]
    i = 0
    while lib.cym_bsess_item(engine, i, item):
        msg = (ffi.unpack(item.topic, item.topic_len), ffi.unpack(item.data, item.data_len),
               item.flags >> 1, bool(item.flags & 1), ffi.unpack(item.props, item.props_len),
               int(item.expire_at))
        if i < n_inflight:
            inflight[int(item.pid)] = [msg, bool(item.released)]
        else:
            queue.append(msg)
        i += 1
    return inflight, queue
