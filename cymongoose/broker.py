"""A small MQTT 3.1.1 broker on top of ``Manager.mqtt_listen``.

Start one in a few lines::

    mgr = cymongoose.Manager()
    broker = cymongoose.MqttBroker(mgr, "mqtt://0.0.0.0:1883")
    mgr.run()

It accepts CONNECT (answering CONNACK), routes PUBLISH to every client whose
subscription matches, with the ``+`` and ``#`` wildcards, delivering at the
lower of the published and the subscribed QoS; answers SUBSCRIBE,
UNSUBSCRIBE and PINGREQ; keeps retained messages (an empty retained payload
clears the topic) and sends them to new subscriptions; publishes a client's
last will when its connection ends without DISCONNECT.  The QoS 1 and 2
acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) are sent by the MQTT
parser in C, as is the keep-alive check (a client silent for 1.5 keep-alive
periods is dropped).

Limits, by design: MQTT 3.1.1 only (an MQTT 5 client gets CONNACK "unsupported
protocol version"), every session is clean (nothing is kept for a client
after it disconnects, so ``session present`` is always 0), no
authentication, and messages in flight are not resent (delivery relies on the
live TCP connection).  A client that breaks the protocol (a malformed
packet, a wildcard in a PUBLISH topic, any packet before CONNECT) gets
``MG_EV_ERROR`` and is disconnected; other clients are not affected.
"""

from typing import Dict, List, Optional, Set, Tuple

from . import constants as C
from ._dispatch import handles
from .connection import Connection
from .errors import ClosedError
from .manager import Manager
from .messages import MqttMessage
from .tls import TlsOpts, tls_on_accept

_CONNECT, _PUBLISH, _SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT = 1, 3, 8, 10, 12, 14
_TO_CLIENT_ONLY = frozenset((2, 9, 11, 13))  # CONNACK, SUBACK, UNSUBACK, PINGRESP
_CONNACK_OK = b"\x20\x02\x00\x00"
_CONNACK_BAD_VERSION = b"\x20\x02\x00\x01"
_CONNACK_BAD_VERSION_V5 = b"\x20\x03\x00\x84\x00"  # MQTT 5 form, reason 0x84
_CONNACK_BAD_ID = b"\x20\x02\x00\x02"
_SUBACK_FAILURE = 0x80


class _Malformed(Exception):
    """A packet that breaks the MQTT 3.1.1 rules."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (``+`` one level, ``#`` the rest).

    As MQTT requires, a filter starting with a wildcard does not match
    topics starting with ``$``.  ``"a/#"`` also matches ``"a"``.
    """
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def valid_filter(topic_filter: str) -> bool:
    """Whether ``topic_filter`` is a well-formed subscription filter."""
    if not topic_filter or "\0" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    """Reads the fields of one packet; running short raises ``_Malformed``."""

    __slots__ = ("buf", "pos")

    def __init__(self, packet: bytes) -> None:
        pos = 1
        while packet[pos] & 0x80:  # remaining length, already checked by the C parser
            pos += 1
        self.buf = packet
        self.pos = pos + 1

    def more(self) -> bool:
        return self.pos < len(self.buf)

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise _Malformed("packet too short")
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def blob(self) -> bytes:
        n = self.u16()
        end = self.pos + n
        if end > len(self.buf):
            raise _Malformed("field runs past the packet")
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("string is not UTF-8") from None


class _Session:
    __slots__ = ("client_id", "subs", "will")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.subs: Dict[str, int] = {}  # topic filter -> granted QoS
        self.will: Optional[Tuple[str, bytes, int, bool]] = None


class MqttBroker:
    """A small MQTT 3.1.1 broker listening on ``url`` with ``mgr`` (see the module doc).

    It runs inside ``mgr``'s polls, on a listener with its own handler, so
    the Manager can serve other things too.  ``tls``, a ``TlsOpts``
    (``cert``, ``key``, and ``ca`` to require client certificates), serves
    MQTTS (use an ``mqtts://`` URL).  Raises ``RuntimeError`` when
    Mongoose cannot listen on ``url``, ``TypeError``/``ValueError`` for
    unusable ``tls``.
    """

    def __init__(self, mgr: Manager, url: str = "mqtt://127.0.0.1:1883",
                 tls: Optional[TlsOpts] = None) -> None:
        self._peers: Set[Connection] = set()  # every accepted connection
        self._sessions: Dict[Connection, _Session] = {}  # those past a valid CONNECT
        self._by_id: Dict[str, Connection] = {}
        self._retained: Dict[str, Tuple[bytes, int]] = {}
        self._next_id = 0
        handler = self._on_event if tls is None else tls_on_accept(self._on_event, tls)
        #: The listening connection.
        self.listener = mgr.mqtt_listen(url, handler)

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0); 0 once closed."""
        addr = self.listener.local_addr
        return addr[1] if addr is not None else 0

    @property
    def clients(self) -> Tuple[str, ...]:
        """Client ids of the connected clients."""
        return tuple(s.client_id for s in self._sessions.values())

    @property
    def retained(self) -> Dict[str, bytes]:
        """A copy of the retained messages, by topic."""
        return {topic: data for topic, (data, _) in self._retained.items()}

    def close(self) -> None:
        """Stop listening and disconnect every client (wills are published)."""
        self.listener.close()
        for conn in list(self._peers):
            conn.close()

    # -- events ----------------------------------------------------------------

    @handles(C.MG_EV_ACCEPT, C.MG_EV_MQTT_CMD, C.MG_EV_CLOSE)
    def _on_event(self, conn: Connection, ev: int, msg: Optional[MqttMessage]) -> None:
        if ev == C.MG_EV_ACCEPT:
            self._peers.add(conn)
            return
        if ev == C.MG_EV_CLOSE:
            self._peers.discard(conn)
            self._gone(conn)
            return
        if msg is None:
            return
        try:
            self._packet(conn, msg)
        except _Malformed as exc:
            conn.error("MQTT protocol error: %s" % exc)

    def _packet(self, conn: Connection, msg: MqttMessage) -> None:
        cmd = msg.cmd
        session = self._sessions.get(conn)
        if cmd == _CONNECT:
            if session is not None:
                raise _Malformed("second CONNECT")
            self._connect(conn, msg.dgram)
        elif session is None:
            raise _Malformed("first packet must be CONNECT")
        elif cmd == _PUBLISH:
            self._publish(msg.topic, msg.data, msg.qos, msg.retain)
        elif cmd == _SUBSCRIBE:
            self._subscribe(conn, session, msg.dgram)
        elif cmd == _UNSUBSCRIBE:
            self._unsubscribe(conn, session, msg.dgram)
        elif cmd == _PINGREQ:
            conn.mqtt_pong()
        elif cmd == _DISCONNECT:
            session.will = None
            conn.close()
        elif cmd in _TO_CLIENT_ONLY:
            raise _Malformed("packet type %d is sent by servers only" % cmd)

    def _connect(self, conn: Connection, packet: bytes) -> None:
        r = _Reader(packet)
        name = r.blob()
        level = r.u8()
        if name != b"MQTT" or level != 4:
            conn.send(_CONNACK_BAD_VERSION_V5 if level == 5 else _CONNACK_BAD_VERSION)
            conn.drain()
            return
        flags = r.u8()
        r.u16()  # keep-alive: enforced by the C parser
        will_flag, will_qos, will_retain = flags & 0x04, (flags >> 3) & 3, flags & 0x20
        if flags & 0x01 or will_qos == 3 or (not will_flag and (will_qos or will_retain)) \
                or (flags & 0x40 and not flags & 0x80):
            raise _Malformed("bad CONNECT flags 0x%02x" % flags)
        client_id = r.text()
        will = None
        if will_flag:
            will_topic = r.text()
            if not will_topic or "+" in will_topic or "#" in will_topic:
                raise _Malformed("bad will topic")
            will = (will_topic, r.blob(), will_qos, bool(will_retain))
        if flags & 0x80:
            r.text()  # user name: no authentication here
        if flags & 0x40:
            r.blob()  # password
        if r.more():
            raise _Malformed("bytes after the CONNECT payload")
        if not client_id:
            if not flags & 0x02:  # a persistent session needs an id (MQTT-3.1.3-8)
                conn.send(_CONNACK_BAD_ID)
                conn.drain()
                return
            self._next_id += 1
            client_id = "cymongoose-%d" % self._next_id
        previous = self._by_id.get(client_id)
        if previous is not None:  # the same client again: the old connection goes
            previous.close()
        session = _Session(client_id)
        session.will = will
        self._sessions[conn] = session
        self._by_id[client_id] = conn
        conn.send(_CONNACK_OK)

    def _publish(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise _Malformed("bad PUBLISH topic %r" % topic)
        if retain:
            if data:
                self._retained[topic] = (data, qos)
            else:
                self._retained.pop(topic, None)
        for conn, session in list(self._sessions.items()):
            granted = -1
            for topic_filter, sub_qos in session.subs.items():
                if sub_qos > granted and topic_matches(topic_filter, topic):
                    granted = sub_qos
            if granted >= 0:
                self._deliver(conn, topic, data, min(qos, granted), False)

    @staticmethod
    def _deliver(conn: Connection, topic: str, data: bytes, qos: int, retain: bool) -> None:
        try:
            conn.mqtt_pub(topic, data, qos, retain)
        except ClosedError:
            pass  # closed earlier in this poll; its CLOSE event is still to come

    def _subscribe(self, conn: Connection, session: _Session, packet: bytes) -> None:
        if packet[0] & 0x0F != 2:
            raise _Malformed("bad SUBSCRIBE flags")
        r = _Reader(packet)
        pid = r.u16()
        codes = bytearray()
        new: List[Tuple[str, int]] = []
        while r.more():
            topic_filter = r.text()
            qos = r.u8()
            if qos > 2:
                raise _Malformed("bad requested QoS %d" % qos)
            if valid_filter(topic_filter):
                session.subs[topic_filter] = qos
                new.append((topic_filter, qos))
                codes.append(qos)
            else:
                codes.append(_SUBACK_FAILURE)
        if not codes:
            raise _Malformed("SUBSCRIBE without topic filters")
        conn.send(b"\x90" + _varint(2 + len(codes)) + pid.to_bytes(2, "big") + bytes(codes))
        for topic, (data, qos) in list(self._retained.items()):
            granted = max((q for f, q in new if topic_matches(f, topic)), default=-1)
            if granted >= 0:
                self._deliver(conn, topic, data, min(qos, granted), True)

    def _unsubscribe(self, conn: Connection, session: _Session, packet: bytes) -> None:
        if packet[0] & 0x0F != 2:
            raise _Malformed("bad UNSUBSCRIBE flags")
        r = _Reader(packet)
        pid = r.u16()
        count = 0
        while r.more():
            session.subs.pop(r.text(), None)
            count += 1
        if not count:
            raise _Malformed("UNSUBSCRIBE without topic filters")
        conn.send(b"\xb0\x02" + pid.to_bytes(2, "big"))

    def _gone(self, conn: Connection) -> None:
        session = self._sessions.pop(conn, None)
        if session is None:
            return
        if self._by_id.get(session.client_id) is conn:
            del self._by_id[session.client_id]
        if session.will is not None:
            topic, data, qos, retain = session.will
            self._publish(topic, data, qos, retain)

    def __repr__(self) -> str:
        return "<MqttBroker port=%d clients=%d>" % (self.port, len(self._sessions))


__all__ = ["MqttBroker", "topic_matches", "valid_filter"]

