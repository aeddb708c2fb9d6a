"""An MQTT broker (MQTT 5, 3.1.1 and 3.1) on top of ``Manager.mqtt_listen``.

Start one in a few lines::

    mgr = cymongoose.Manager()
    broker = cymongoose.MqttBroker(mgr, "mqtt://0.0.0.0:1883")
    mgr.run()

It routes PUBLISH to every client whose subscription matches (``+`` and
``#`` wildcards), once per client at the highest QoS its matching
subscriptions grant, capped by the published QoS; keeps retained messages
and last wills; keeps the sessions of clients that ask for it
(``clean_session=0``), queueing their QoS 1/2 messages while they are away
and resending unacknowledged ones, in order, when they come back; delivers
an incoming QoS 2 message once even when the client resends it.  Optional:
passwords (a mosquitto password file or a callback), topic ACLs (a
mosquitto ACL file or a callback), limits on connections, in-flight and
queued messages and packet size, and ``$SYS/broker/...`` statistics.

MQTT 5: a message's properties (user properties, content type, payload
format, response topic, correlation data) reach MQTT 5 subscribers, its
Message Expiry Interval as what is left of it, and a message that expires
before it could go is not sent; subscription options No Local, Retain As
Published and Retain Handling; shared subscriptions (``$share/NAME/FILTER``:
each message to one member, in turn); the client's Maximum Packet Size and
Receive Maximum; a client id assigned in CONNACK to a client that sent none.
The CONNACK says there are no topic aliases or subscription identifiers,
and a protocol error gets a DISCONNECT with its reason code before the
connection closes.

Each bad input gets the protocol's answer and a line on the
``cymongoose.broker`` logger, and disturbs no other client: a malformed or
oversize packet or a packet before CONNECT closes that connection (MQTT 5:
after a DISCONNECT that says why); a wrong
password gets CONNACK "bad user name or password" (or "not authorized" when
no user name was given); a refused subscription gets SUBACK 0x80 (MQTT 5:
0x87); a refused publish is dropped; a client id already connected takes
the session over and the older connection is closed.
"""

import logging
import time
from typing import Dict, List, Optional, Tuple

from . import _broker_store
from . import constants as C
from ._broker_auth import Acl, Authenticate, Guard
from ._broker_bridge import Bridge
from ._broker_packets import (NO_LOCAL, RETAIN_AS_PUBLISHED, Malformed, Reader, connack,
                              disconnect, disconnect_expiry, message_properties,
                              parse_connect, parse_subscribe, parse_unsubscribe, shared_filter,
                              suback, topic_matches, unsuback, valid_filter)
from ._broker_session import Session
from ._dispatch import handles
from ._ffi import ffi, lib
from .connection import Connection
from .manager import Manager
from .messages import MqttMessage
from .timers import Timer
from .tls import TlsOpts, tls_on_accept

log = logging.getLogger("cymongoose.broker")

# Public here: the filter rules the broker applies, for applications that
# route messages among their own clients (a page's subscriptions, say).
topic_matches.__module__ = valid_filter.__module__ = __name__

_CONNECT, _PUBLISH, _PUBREL, _SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT = \
    1, 3, 6, 8, 10, 12, 14
_ACKS = frozenset((4, 5, 7))  # PUBACK, PUBREC, PUBCOMP: taken by the C engine
_TO_CLIENT_ONLY = frozenset((2, 9, 11, 13))  # CONNACK, SUBACK, UNSUBACK, PINGRESP
_AUTH = 15  # MQTT 5 enhanced authentication, which the broker does not offer
_NEVER = 0xFFFFFFFF  # a Session Expiry Interval that never ends
_ROUTE_CACHE_MAX = 10000  # topics whose subscriber list is remembered
_WRITES_MAX = 1000  # topics per client whose ACL "write" decision is remembered
_MQTT_CMD = C.MG_EV_MQTT_CMD
_fields = lib.cym_mqtt_fields
_MALFORMED = int(lib.CYM_MQTT_MALFORMED)
_unpack = ffi.unpack
# CONNACK codes: (MQTT 3.1.1, MQTT 5)
_BAD_ID, _UNAVAILABLE, _BAD_LOGIN, _NOT_AUTHORIZED = (2, 0x85), (3, 0x97), (4, 0x86), (5, 0x87)

# topic, payload, QoS, retain, MQTT 5 properties passed on, Message Expiry
# Interval in seconds (-1: none)
Will = Tuple[str, bytes, int, bool, bytes, int]
# a receiving session, and its granted QoS with the options NO_LOCAL and
# RETAIN_AS_PUBLISHED of its matching subscriptions
Route = Tuple[Session, int]
# a retained message: payload, QoS, MQTT 5 properties, wall-clock ms it
# expires (0: never)
Retained = Tuple[bytes, int, bytes, int]
# A shared subscription group: its key ($share/NAME/FILTER) and members, of
# which each message goes to one (MQTT 5 section 4.8.2).
Group = Tuple[str, List[Route]]
# What the broker remembers per topic until the subscriptions change: the
# topic as text and as bytes, the subscribers with their granted QoS, the
# bridges that take it, the shared subscription groups that match it.
Entry = Tuple[str, bytes, List[Route], List[Bridge], List[Group]]


class MqttBroker:
    """An MQTT broker listening on ``url`` with ``mgr`` (see the module doc).

    Keyword-only options:

    * ``password_file``: a mosquitto password file (``mosquitto_passwd``);
      or ``authenticate(client_id, username, password) -> bool``.
    * ``allow_anonymous``: admit clients that send no user name; defaults to
      True without passwords and False with them.
    * ``acl_file``: a mosquitto ACL file; or ``acl(client_id, username,
      topic, access) -> bool`` with access ``"read"``, ``"write"`` or
      ``"subscribe"`` (for a shared subscription, its filter without
      ``$share/NAME/``).  A decision is remembered until the subscriptions
      change: per topic, and for publishing per topic and client.
    * ``max_connections`` (0: no limit): more clients get CONNACK "server
      unavailable".
    * ``max_inflight`` (20) and ``max_queued`` (1000): per client, the QoS
      1/2 messages awaiting acknowledgement (fewer when an MQTT 5 client's
      Receive Maximum is lower), and those queued behind them or while the
      client is away; a message finding the queue full is dropped.
    * ``max_packet_size`` (0: Mongoose's 3 MB receive limit): larger packets
      close the connection.
    * ``sys_interval`` (seconds, 0 turns it off): how often the
      ``$SYS/broker/...`` statistics are published (retained).
    * ``persistence_file``: kept sessions and retained messages are read
      from this JSON file at start and written to it by ``close()``.
    * ``tls``: a ``TlsOpts`` (``cert``, ``key``, and ``ca`` to require
      client certificates) serves MQTTS (use an ``mqtts://`` URL).

    Raises ``RuntimeError`` (``ListenError``) when Mongoose cannot listen on
    ``url``, ``ValueError`` for conflicting options, a bad file or unusable
    ``tls`` (``TypeError`` for a ``tls`` that is not a ``TlsOpts``), and
    ``OSError`` when a file cannot be read.
    """

    def __init__(self, mgr: Manager, url: str = "mqtt://127.0.0.1:1883", *,
                 password_file: Optional[str] = None,
                 authenticate: Optional[Authenticate] = None,
                 allow_anonymous: Optional[bool] = None, acl_file: Optional[str] = None,
                 acl: Optional[Acl] = None, max_connections: int = 0,
                 max_inflight: int = 20, max_queued: int = 1000, max_packet_size: int = 0,
                 sys_interval: float = 10, persistence_file: Optional[str] = None,
                 tls: Optional[TlsOpts] = None) -> None:
        if max_inflight < 1 or max_queued < 0 or max_connections < 0 or max_packet_size < 0:
            raise ValueError("limits must be positive (max_inflight at least 1)")
        self._guard = Guard(password_file, authenticate, acl_file, acl, allow_anonymous)
        self._peers: Dict[Connection, Optional[Will]] = {}  # accepted -> its will
        self._conns: Dict[Connection, Session] = {}  # those past a valid CONNECT
        self._persistence = persistence_file
        # by client id, connected or kept; retained messages by topic
        self._sessions: Dict[str, Session] = {}
        self._retained: Dict[str, Retained] = {}
        if persistence_file is not None:
            self._sessions, self._retained = _broker_store.load(
                persistence_file, max_inflight, max_queued)
        self._routes: Dict[bytes, Entry] = {}  # by topic, as sent
        self._turns: Dict[str, int] = {}  # shared subscription group -> messages it took
        self._epoch = 0  # counts subscription changes: older ACL decisions are void
        # where cym_mqtt_fields leaves a PUBLISH's topic and lengths
        self._at = ffi.new("const char *[1]")
        self._span = ffi.new("size_t[2]")
        self._bridges: List[Bridge] = []
        self._mgr = mgr
        #: Kept sessions without a connection that expire (MQTT 5), by client
        #: id, and the timer that sweeps them while there are any.
        self._expiring: Dict[str, Session] = {}
        self._sweeper: Optional[Timer] = None
        for session in self._sessions.values():  # loaded from the persistence file
            if session.expiry is not None:
                self._expiring[session.client_id] = session
                self._arm_sweeper()
        self._next_id = 0
        self._max = (max_connections, max_inflight, max_queued)
        self._received = 0
        self._started = time.monotonic()
        #: The listening connection.
        handler = self._on_event if tls is None else tls_on_accept(self._on_event, tls)
        self.listener = mgr.mqtt_listen(url, handler)
        # The C engine (_csrc/mqtt_broker.c) hangs on the listener and the
        # connections it accepts, whose handlers keep this object alive.
        engine = lib.cym_broker_new(self.listener._c, max_packet_size,
                                    0 if self._guard.acl is None else 1)
        if engine == ffi.NULL:
            self.listener.close()
            raise MemoryError("MqttBroker: out of memory")
        self._engine = ffi.gc(engine, lib.cym_broker_free)
        self._sys: Optional[Timer] = None
        if sys_interval > 0:
            self._sys = mgr.timer_add(int(sys_interval * 1000), self._publish_sys,
                                      repeat=True, run_now=True)

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0); 0 once closed."""
        addr = self.listener.local_addr
        return addr[1] if addr is not None else 0

    @property
    def clients(self) -> Tuple[str, ...]:
        """Client ids of the connected clients."""
        return tuple(s.client_id for s in self._conns.values())

    @property
    def sessions(self) -> Tuple[str, ...]:
        """Client ids of every kept session, connected or not."""
        return tuple(self._sessions)

    @property
    def retained(self) -> Dict[str, bytes]:
        """A copy of the retained messages, by topic (``$SYS`` ones left out)."""
        return {topic: kept[0] for topic, kept in self._retained.items()
                if not topic.startswith("$SYS/")}

    @property
    def stats(self) -> Dict[str, int]:
        """Counters, as published under ``$SYS/broker/``."""
        sessions = self._sessions.values()
        counts = [s.counts() for s in sessions]
        return {
            "clients/connected": len(self._conns),
            "clients/total": len(self._sessions),
            "messages/received": self._received + lib.cym_broker_received(self._engine),
            "messages/sent": sum(c[0] for c in counts),
            "messages/dropped": sum(c[1] for c in counts),
            "messages/inflight": sum(c[2] for c in counts),
            "messages/queued": sum(c[3] for c in counts),
            "subscriptions/count": sum(len(s.subs) for s in sessions),
            "retained messages/count": len(self._retained),
            "uptime": int(time.monotonic() - self._started),
        }

    @property
    def bridges(self) -> Tuple[Bridge, ...]:
        """The bridges added by ``add_bridge``."""
        return tuple(self._bridges)

    def add_bridge(self, url: str, topics: List[str], *, name: str = "bridge",
                   username: str = "", password: str = "", reconnect_min: float = 0.5,
                   reconnect_max: float = 30.0, max_queued: int = 1000) -> Bridge:
        """Bridge to the upstream broker at ``url`` (it must speak MQTT 5).

        ``topics`` are mosquitto ``topic`` lines: ``PATTERN [in|out|both
        [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]``.  The bridge connects as
        ``cymongoose-bridge-NAME`` with a kept session and reconnects with
        backoff; messages for upstream wait in a queue of ``max_queued``
        while it is away.  Raises ``ValueError`` for a bad topic line.
        """
        bridge = Bridge(self._mgr, url, topics, self._inject, name=name, username=username,
                        password=password, reconnect_min=reconnect_min,
                        reconnect_max=reconnect_max, max_queued=max_queued)
        self._bridges.append(bridge)
        self._forget_routes()
        return bridge

    def _inject(self, topic: str, data: bytes, qos: int, retain: bool, origin: Bridge) -> None:
        self._received += 1
        self._publish(topic, data, qos, retain, origin)

    def close(self) -> None:
        """Stop listening, disconnect every client (wills are published), save sessions."""
        if self._sys is not None:
            self._sys.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for bridge in self._bridges:
            bridge.close()
        self.listener.close()
        for conn in list(self._peers):
            conn.close()
        if self._persistence is not None:
            _broker_store.save(self._persistence, self._sessions.values(), self._retained)

    def _publish_sys(self) -> None:
        for name, value in self.stats.items():
            self._publish("$SYS/broker/" + name, str(value).encode(), 0, True)

    # -- events ----------------------------------------------------------------

    @handles(C.MG_EV_ACCEPT, C.MG_EV_MQTT_CMD, C.MG_EV_ERROR, C.MG_EV_CLOSE)
    def _on_event(self, conn: Connection, ev: int, msg: Optional[MqttMessage]) -> None:
        if ev == _MQTT_CMD and msg is not None:
            # the fields of every packet in one C call; PUBLISH first (the
            # acks to our deliveries stay in the C engine)
            f = _fields(msg._addr, self._at, self._span)
            cmd = f & 15
            session = self._conns.get(conn)
            try:
                if f & _MALFORMED:
                    if cmd == _PUBLISH and session is not None:
                        self._properties(f)  # raises the MQTT 5 reason, if it is theirs
                    # the rules of _csrc/mqtt.c, cym_mqtt_malformed
                    raise Malformed("malformed packet of type %d (fixed-header flags, "
                                    "packet identifier or properties)" % cmd)
                if session is None:
                    if cmd != _CONNECT:
                        raise Malformed("first packet must be CONNECT")
                    self._connect(conn, msg.dgram)
                elif cmd == _PUBLISH:
                    self._incoming(conn, session, f)
                else:
                    self._packet(conn, session, cmd, msg)
            except Malformed as exc:
                if session is None or lib.cym_mqtt_version(conn._c) != 5:
                    conn.error("MQTT protocol error: %s" % exc)  # logged on MG_EV_ERROR
                else:
                    # MQTT 5 tells the client why before closing (section 4.13.1)
                    log.warning("client %s: MQTT protocol error: %s", self._who(conn), exc)
                    conn.send(disconnect(exc.code))
                    conn.drain()
        elif ev == C.MG_EV_ACCEPT:
            self._peers[conn] = None
        elif ev == C.MG_EV_ERROR:
            log.warning("client %s: %s", self._who(conn), msg)
        elif ev == C.MG_EV_CLOSE:
            self._gone(conn, self._peers.pop(conn, None))

    def _who(self, conn: Connection) -> str:
        session = self._conns.get(conn)
        return repr(session.client_id) if session else "at %s" % (conn.remote_addr,)

    def _packet(self, conn: Connection, session: Session, cmd: int, msg: MqttMessage) -> None:
        """The packets other than CONNECT, PUBLISH and PUBACK."""
        if cmd in _ACKS:
            pass  # for a message the C engine no longer holds
        elif cmd == _PUBREL:
            session.qos2_in.discard(msg.id)
        elif cmd == _SUBSCRIBE:
            self._subscribe(conn, session, msg.dgram)
        elif cmd == _UNSUBSCRIBE:
            self._unsubscribe(conn, session, msg.dgram)
        elif cmd == _PINGREQ:
            conn.mqtt_pong()
        elif cmd == _DISCONNECT:
            dgram = msg.dgram
            v5 = lib.cym_mqtt_version(conn._c) == 5
            if not (v5 and len(dgram) > 2 and dgram[2] == 4):
                self._peers[conn] = None  # a normal DISCONNECT discards the will
            expiry = disconnect_expiry(dgram) if v5 else None
            # A session that CONNECT said ends with the connection stays so
            # (MQTT-3.14.2-2); others take the new interval.
            if expiry is not None and session.persistent:
                session.persistent = expiry > 0
                session.expiry = None if expiry == _NEVER else expiry
            conn.close()
        elif cmd == _CONNECT:
            raise Malformed("second CONNECT")
        elif cmd in _TO_CLIENT_ONLY:
            raise Malformed("packet type %d is sent by servers only" % cmd)
        elif cmd == _AUTH:
            # Only after a CONNECT with an Authentication Method (MQTT 5
            # section 4.12), which the broker never takes up.
            raise Malformed("AUTH without an authentication exchange")

    def _answer(self, conn: Connection, v5: bool, code: Tuple[int, int], why: str) -> None:
        log.warning("client at %s refused: %s", conn.remote_addr, why)
        conn.send(connack(v5, False, code[1] if v5 else code[0]))
        conn.drain()

    def _connect(self, conn: Connection, packet: bytes) -> None:
        hello = parse_connect(packet)
        v5 = hello.version == 5
        if hello.version not in (3, 4, 5):
            # an unknown protocol: the 3.1.1 answer "unacceptable protocol version"
            log.warning("client at %s refused: not MQTT 3.1, 3.1.1 or 5", conn.remote_addr)
            conn.send(connack(False, False, 1))
            conn.drain()
            return
        client_id = assigned = hello.client_id
        if not client_id:
            # A kept session needs an id (MQTT-3.1.3-8); MQTT 3.1 always does.
            if (not hello.clean and not v5) or hello.version == 3:
                why = "empty client id, " + ("MQTT 3.1" if hello.version == 3
                                             else "clean_session=0")
                return self._answer(conn, v5, _BAD_ID, why)
            self._next_id += 1
            client_id = assigned = "cymongoose-%d" % self._next_id
        max_connections, max_inflight, max_queued = self._max
        old = self._sessions.get(client_id)
        taking_over = old is not None and old.conn is not None
        if max_connections and len(self._conns) >= max_connections and not taking_over:
            return self._answer(conn, v5, _UNAVAILABLE, "max_connections reached")
        if not self._guard.admits(client_id, hello.username, hello.password):
            code = _NOT_AUTHORIZED if hello.username is None else _BAD_LOGIN
            return self._answer(conn, v5, code, "bad credentials for client id %r (user %r)"
                                % (client_id, hello.username))
        if taking_over:
            log.info("client %r: a new connection takes the session over", client_id)
            previous = old.conn if old is not None else None
            if previous is not None:
                self._gone(previous, self._peers.get(previous))
                self._peers[previous] = None
                if lib.cym_mqtt_version(previous._c) == 5:
                    previous.send(disconnect(0x8E))  # Session taken over
                    previous.drain()
                else:
                    previous.close()
            old = self._sessions.get(client_id)
        if old is not None and (hello.clean or old.username != hello.username
                                or old.expired(time.monotonic())):
            self._drop_session(old)
            old = None
        session = old or Session(client_id, max_inflight, max_queued)
        session.username = hello.username
        # Never more unacknowledged QoS 1/2 deliveries than the client takes
        # (MQTT 5 Receive Maximum, MQTT-3.3.4-9).
        session.max_inflight = min(max_inflight, hello.receive_max)
        session.persistent = hello.expiry > 0 if v5 else not hello.clean
        session.expiry = hello.expiry if v5 and hello.expiry != _NEVER else None
        self._expiring.pop(client_id, None)
        self._sessions[client_id] = session
        self._conns[conn] = session
        self._peers[conn] = hello.will
        # MQTT 3.1's CONNACK has no session-present flag.
        conn.send(connack(v5, old is not None and hello.version != 3, 0,
                          assigned if assigned != hello.client_id else ""))
        if not session.attach(conn, hello.max_packet):
            log.warning("client %r: out of memory for its session", client_id)
            conn.close()

    def _drop_session(self, session: Session) -> None:
        del self._sessions[session.client_id]
        if session.subs:
            self._forget_routes()

    def _incoming(self, conn: Connection, session: Session, f: int) -> None:
        """A client's PUBLISH, whose fields ``cym_mqtt_fields`` returned as ``f``.

        One the C engine could not route by itself; when it can route the
        next ones (QoS 0/1, no retain flag, no bridge for the topic, no
        shared subscription group, every receiver connected and none with No
        Local), the route is left to it (a PUBLISH with a Message Expiry
        Interval or a bad property still comes here).
        """
        span = self._span
        whole = _unpack(self._at[0], span[0])  # topic .. end of packet
        raw = whole[:f >> 24]
        qos = (f >> 4) & 3
        if qos == 2:
            pid = (f >> 8) & 0xFFFF
            if pid in session.qos2_in:
                return  # a resent QoS 2 message: delivered already
            session.qos2_in.add(pid)
        entry = self._routes.get(raw)
        if entry is None:
            entry = self._route(raw)
            if entry is None:
                raise Malformed("bad PUBLISH topic %r" % raw)
        topic, _, routes, bridges, groups = entry
        if self._guard.acl is not None:
            writes = session.writes
            if writes is None or session.acl_epoch != self._epoch:
                writes = session.writes = {}
                session.acl_epoch = self._epoch
            allowed = writes.get(raw)
            if allowed is None:
                if len(writes) >= _WRITES_MAX:
                    writes.clear()
                allowed = writes[raw] = self._guard.allows(
                    session.client_id, session.username, topic, "write")
            if not allowed:
                log.warning("client %r: publish to %r denied by the ACL", session.client_id,
                            topic)
                return
        self._received += 1
        data = whole[span[1]:]
        # an MQTT 5 publisher's properties: more than their empty length
        props, expire_at = self._properties(f) if span[1] - (f >> 24) > (3 if qos else 1) \
            else (b"", 0)
        if f & 64 or bridges or groups:
            self._send(entry, data, qos, f & 64 != 0, None, props, expire_at, session)
            return
        for sub, granted in routes:
            if granted > 3:
                self._deliver(sub, granted, raw, data, qos, False, props, expire_at, session)
            else:
                sub.deliver(raw, data, qos if qos < granted else granted, False, props,
                            expire_at)
        if qos < 2:
            self._offer_route(conn, raw, routes)

    def _properties(self, f: int) -> Tuple[bytes, int]:
        """The MQTT 5 properties of the PUBLISH that ``cym_mqtt_fields``
        read (``f``) to pass on, and when it expires (wall-clock ms, 0:
        never); ``Malformed`` for those it may not carry."""
        start = (f >> 24) + (2 if (f >> 4) & 3 else 0)  # past the topic and packet id
        block = _unpack(self._at[0] + start, self._span[1] - start)
        if not block:  # MQTT 3.1.1
            return b"", 0
        props, expiry = message_properties(Reader.over(block).properties())
        return props, _expire_at(expiry)

    @staticmethod
    def _deliver(sub: Session, granted: int, raw: bytes, data: bytes, qos: int, retain: bool,
                 props: bytes, expire_at: int, publisher: Optional[Session]) -> None:
        """One message for a subscriber whose matching subscriptions have
        options (``granted`` above 3): none for its own publisher with No
        Local, the publisher's retain flag with Retain As Published."""
        if granted & NO_LOCAL and sub is publisher:
            return
        sub.deliver(raw, data, min(qos, granted & 3),
                    retain and granted & RETAIN_AS_PUBLISHED != 0, props, expire_at)

    def _offer_route(self, conn: Connection, raw: bytes, routes: List[Route]) -> None:
        """Leave a route to the C engine (it takes the next publishes to the
        topic from ``conn``, and without an ACL from anyone, until the
        routes change), unless a receiver is away or does not take its own
        messages (No Local)."""
        engines = [s.engine for s, _ in routes]
        if None in engines or any(granted & NO_LOCAL for _, granted in routes):
            return
        lib.cym_broker_route(self._engine, raw, len(raw), ffi.new("struct cym_bsess *[]",
                                                                    engines or 1),
                             bytes(granted & 3 for _, granted in routes), len(routes), conn._c)

    def _publish(self, topic: str, data: bytes, qos: int, retain: bool,
                 origin: Optional[Bridge] = None, props: bytes = b"",
                 expire_at: int = 0) -> None:
        """A message from inside the broker: a will, ``$SYS``, or one a bridge brought."""
        raw = topic.encode("utf-8")
        entry = self._routes.get(raw) or self._route(raw) or self._entry(topic, raw)
        self._send(entry, data, qos, retain, origin, props, expire_at)

    def _send(self, entry: Entry, data: bytes, qos: int, retain: bool,
              origin: Optional[Bridge], props: bytes = b"", expire_at: int = 0,
              publisher: Optional[Session] = None) -> None:
        topic, raw, routes, bridges, groups = entry
        if groups:
            routes = routes + [self._member(key, members) for key, members in groups]
        if retain:
            if data:
                self._retained[topic] = (data, qos, props, expire_at)
            else:
                self._retained.pop(topic, None)
        for session, granted in routes:
            if granted > 3:
                self._deliver(session, granted, raw, data, qos, retain, props, expire_at,
                              publisher)
            else:
                session.deliver(raw, data, qos if qos < granted else granted, False, props,
                                expire_at)
        for bridge in bridges:
            if bridge is not origin:  # never back where it came from
                bridge.forward(topic, data, qos, retain)

    def _route(self, raw: bytes) -> Optional[Entry]:
        """The cache entry of a topic clients may publish to; None for a bad topic."""
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            return None
        if len(self._routes) >= _ROUTE_CACHE_MAX:
            self._routes.clear()
        entry = self._routes[raw] = self._entry(topic, raw)
        return entry

    def _entry(self, topic: str, raw: bytes) -> Entry:
        routes, groups = self._match(topic)
        return (topic, raw, routes, self._bridges_out(topic), groups)

    def _member(self, key: str, members: List[Route]) -> Route:
        """The member of a shared subscription group that takes the next
        message: in turn, among those connected if any is."""
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        connected = [m for m in members if m[0].engine is not None] or members
        return connected[turn % len(connected)]

    def _forget_routes(self) -> None:
        """Subscriptions changed: drop the cached routes and ACL decisions."""
        self._routes.clear()
        self._turns.clear()
        lib.cym_broker_routes_clear(self._engine)
        self._epoch += 1

    def _bridges_out(self, topic: str) -> List[Bridge]:
        return [b for b in self._bridges if b.forwards(topic)]

    def _match(self, topic: str) -> Tuple[List[Route], List[Group]]:
        """Every session subscribed to ``topic`` with its highest granted
        QoS, and the options of its matching subscriptions: No Local when
        all of them have it, Retain As Published when any has; and the
        shared subscription groups that match, with their members."""
        guard = self._guard
        routes = []
        shared: Dict[str, List[Route]] = {}
        for session in self._sessions.values():
            granted = -1
            options = NO_LOCAL
            for topic_filter, sub in session.subs.items():
                if topic_filter.startswith("$share/"):
                    if topic_matches(topic_filter.split("/", 2)[2], topic) and (
                            guard.acl is None or guard.allows(
                                session.client_id, session.username, topic, "read")):
                        shared.setdefault(topic_filter, []).append((session, sub))
                    continue
                # (a lower QoS matters only while No Local may still be undone)
                if (sub > granted or options) and topic_matches(topic_filter, topic):
                    if sub & 3 > granted:
                        granted = sub & 3
                    options = (options & sub & NO_LOCAL) | ((options | sub) & RETAIN_AS_PUBLISHED)
            if granted >= 0 and options:
                granted |= options
            if granted >= 0 and (guard.acl is None or guard.allows(
                    session.client_id, session.username, topic, "read")):
                routes.append((session, granted))
        return routes, sorted(shared.items())

    def _subscribe(self, conn: Connection, session: Session, packet: bytes) -> None:
        v5 = lib.cym_mqtt_version(conn._c) == 5
        pid, wanted = parse_subscribe(packet, v5)
        codes = bytearray()
        new: List[Tuple[str, int]] = []
        for topic_filter, options in wanted:
            qos = options & 3
            share = topic_filter.startswith("$share/")
            if not valid_filter(topic_filter) or (share and not shared_filter(topic_filter)):
                codes.append(0x8F if v5 else 0x80)
            elif share and options & NO_LOCAL:
                raise Malformed("No Local on a shared subscription")  # MQTT-3.8.3-4
            elif not self._guard.allows(session.client_id, session.username,
                                        # a group's filter, as mosquitto checks it
                                        topic_filter.split("/", 2)[2] if share else topic_filter,
                                        "subscribe"):
                log.warning("client %r: subscription to %r denied by the ACL",
                            session.client_id, topic_filter)
                codes.append(0x87 if v5 else 0x80)
            else:
                # Retain Handling: retained messages 0: always, 1: for a new
                # subscription, 2: never
                # (none for a shared subscription, MQTT 5 section 4.8.2)
                handling = 2 if share else options >> 4
                if handling == 0 or (handling == 1 and topic_filter not in session.subs):
                    new.append((topic_filter, qos))
                session.subs[topic_filter] = options & 15
                codes.append(qos)
        self._forget_routes()
        conn.send(suback(v5, pid, bytes(codes)))
        if not new:
            return
        now = _expire_at(0)
        for topic, (data, qos, props, expire_at) in list(self._retained.items()):
            if expire_at and expire_at < now:
                del self._retained[topic]  # its Message Expiry Interval has run out
                continue
            granted = max((q for f, q in new if topic_matches(f, topic)), default=-1)
            if granted >= 0 and self._guard.allows(session.client_id, session.username,
                                                   topic, "read"):
                session.deliver(topic.encode("utf-8"), data, min(qos, granted), True, props,
                                expire_at)

    def _unsubscribe(self, conn: Connection, session: Session, packet: bytes) -> None:
        v5 = lib.cym_mqtt_version(conn._c) == 5
        pid, filters = parse_unsubscribe(packet, v5)
        codes = bytes(0 if session.subs.pop(f, None) is not None else 0x11 for f in filters)
        self._forget_routes()
        conn.send(unsuback(v5, pid, codes))

    def _gone(self, conn: Connection, will: Optional[Will]) -> None:
        session = self._conns.pop(conn, None)
        if session is None:
            return
        if will is not None:
            topic, data, qos, retain, props, expiry = will
            self._publish(topic, data, qos, retain, None, props, _expire_at(expiry))
        lib.cym_broker_routes_clear(self._engine)  # before the engine forgets the session
        session.detach()
        if not session.persistent:
            self._drop_session(session)
        elif session.expiry is not None:
            self._expiring[session.client_id] = session
            self._arm_sweeper()

    def _arm_sweeper(self) -> None:
        """Start the once-a-second sweep of expiring sessions, unless it runs."""
        if self._sweeper is None:
            self._sweeper = self._mgr.timer_add(1000, self._sweep, repeat=True)

    def _sweep(self) -> None:
        """Once a second while any kept session may expire: drop those that
        have (MQTT 5 section 3.1.2.11.2)."""
        now = time.monotonic()
        for client_id, session in list(self._expiring.items()):
            if session.conn is not None or session.expired(now):
                del self._expiring[client_id]
                if session.conn is None and self._sessions.get(client_id) is session:
                    log.info("client %r: session expired", client_id)
                    self._drop_session(session)
        if not self._expiring and self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def __repr__(self) -> str:
        return "<MqttBroker port=%d clients=%d>" % (self.port, len(self._conns))


def _expire_at(expiry: int) -> int:
    """The wall-clock ms (the C engine's clock) that a Message Expiry
    Interval of ``expiry`` seconds ends; 0 for -1 (none).  An interval of 0
    lets the message go only to those who can take it at once."""
    return int(time.time() * 1000) + expiry * 1000 if expiry >= 0 else 0


__all__ = ["MqttBroker", "topic_matches", "valid_filter"]
