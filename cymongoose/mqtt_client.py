"""``MqttClient``: an MQTT client that keeps its session and reconnects by itself.

``Manager.mqtt_connect`` gives one connection; ``MqttClient`` lives across
many.  It keeps the QoS 1/2 messages in flight both ways (see
``_mqtt_session``), resends them with DUP after a reconnect, queues
publishes made while disconnected (bounded), limits the messages awaiting
acknowledgement (the in-flight window), and reconnects with exponential
backoff and jitter, calling ``on_reconnect(attempt, delay)`` before each
attempt.  When the broker answers a reconnect with a new session, the
client subscribes again to its filters and sends its unacknowledged
messages as new ones.
"""

import random
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import constants as C
from ._args import to_bytes
from ._broker_packets import Malformed, connack_receive_maximum, varint
from ._dispatch import handles, mask_of
from ._ffi import ffi, lib
from ._mqtt_session import ClientSession
from .connection import Connection
from .mqtt import Properties, _qos, _topic
from .timers import Timer

if TYPE_CHECKING:
    from .connection import Handler
    from .manager import Manager

_CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 2, 3, 4, 5, 6, 7
_MQTT_CMD = C.MG_EV_MQTT_CMD
_SHORT = 0xFFFF // 4  # characters that are sure to fit an MQTT string as UTF-8
_fields = lib.cym_mqtt_fields


class MqttClient:
    """An MQTT client on ``mgr`` that survives network drops and broker restarts.

    ``handler(conn, ev, data)`` gets the events of the current connection,
    as with ``Manager.mqtt_connect``, except that a resent QoS 2 message is
    not delivered twice and ``MG_EV_MQTT_OPEN`` comes once the session is
    resumed.  A handler declared with ``@handles`` gets only the events it
    names; one that does not take ``MG_EV_MQTT_CMD`` (or no handler) lets
    the client read the PUBACKs the broker sends in a row as one event.
    Arguments as ``mqtt_connect`` (``client_id`` is required with
    ``clean_session=False``, the default here), plus keyword-only:

    * ``reconnect`` (True): reconnect after a drop or a failed attempt;
    * ``reconnect_min`` / ``reconnect_max`` (seconds, 0.5 / 30): the backoff
      doubles from the first to at most the second; each delay is drawn
      between half of it and all of it (jitter);
    * ``on_reconnect(attempt, delay)``: called when a reconnect is scheduled;
    * ``max_inflight`` (20): QoS 1/2 messages awaiting acknowledgement
      (MQTT 5: fewer when the broker's CONNACK gives a lower Receive
      Maximum);
    * ``max_queued`` (1000): publishes waiting, while disconnected or behind
      a full window; ``publish`` raises ``BufferError`` beyond it;
    * ``session_file``: a JSON file holding the session; loaded now, saved
      by ``close()`` and by ``save()``.

    Methods must be called on the poll thread.
    """

    def __init__(self, mgr: "Manager", url: str, handler: "Optional[Handler]" = None, *,
                 client_id: str = "", username: str = "", password: str = "",
                 clean_session: bool = False, keepalive: int = 60, version: int = 4,
                 properties: Optional[Properties] = None, will_topic: Optional[str] = None,
                 will_message: Any = b"", will_qos: int = 0, will_retain: bool = False,
                 reconnect: bool = True, reconnect_min: float = 0.5,
                 reconnect_max: float = 30.0,
                 on_reconnect: Optional[Callable[[int, float], Any]] = None,
                 max_inflight: int = 20, max_queued: int = 1000,
                 session_file: Optional[str] = None) -> None:
        if not clean_session and not client_id:
            raise ValueError("clean_session=False needs a client_id")
        if max_inflight < 1 or max_queued < 0:
            raise ValueError("max_inflight must be at least 1 and max_queued at least 0")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        self._mgr = mgr
        self._url = url
        self._handler = handler
        self._mask = mask_of(handler)  # the events the handler takes (@handles)
        # where cym_mqtt_fields leaves a PUBLISH's topic and lengths (unused here)
        self._at = ffi.new("const char *[1]")
        self._span = ffi.new("size_t[2]")
        self._login = dict(client_id=client_id, username=username, password=password,
                           clean_session=clean_session, keepalive=keepalive,
                           version=version, properties=properties, will_topic=will_topic,
                           will_message=will_message, will_qos=will_qos,
                           will_retain=will_retain)
        self._reconnect = reconnect
        self._backoff = (reconnect_min, reconnect_max)
        self._on_reconnect = on_reconnect
        self._session_file = session_file
        self._max_inflight = max_inflight
        self.session = ClientSession(max_inflight, max_queued)
        if session_file is not None:
            self.session.load(session_file)
        self._conn: Optional[Connection] = None
        self._ready = False  # CONNACK accepted and the session resumed
        self._attempt = 0
        self._timer: Optional[Timer] = None
        self._closed = False
        self._connect()

    @property
    def connection(self) -> Optional[Connection]:
        """The current connection, or ``None`` between connections."""
        return self._conn

    @property
    def connected(self) -> bool:
        """True once CONNACK accepted the current connection."""
        return self._ready

    @property
    def inflight(self) -> int:
        """QoS 1/2 messages sent and not yet acknowledged."""
        return len(self.session.inflight)

    @property
    def queued(self) -> int:
        """Publishes waiting to be sent."""
        return len(self.session.queue)

    def publish(self, topic: str, message: Any, qos: int = 0, retain: bool = False) -> int:
        """Send a PUBLISH now, or queue it; returns its packet id (0 for QoS 0 or queued).

        Raises ``BufferError`` when the queue is full, ``RuntimeError`` after
        ``close()``, and the argument errors of ``Connection.mqtt_pub``.
        """
        # the common argument types checked inline (a Python call costs more)
        raw = topic.encode() if type(topic) is str and len(topic) <= _SHORT else _topic(topic)
        if type(message) is not bytes:
            message = to_bytes(message)
        if type(qos) is not int or not 0 <= qos <= 2:
            qos = _qos(qos)
        if self._closed:
            raise RuntimeError("MqttClient has been closed")
        conn = self._conn
        c = conn._c if self._ready and conn is not None and not conn._closing else None
        return self.session.publish(c, (raw, message, qos, bool(retain)))

    def subscribe(self, topic: str, qos: int = 0, *, no_local: bool = False,
                  retain_as_published: bool = False) -> None:
        """Subscribe now (or on connecting) and again whenever the broker lost the session.

        ``no_local`` (the broker sends none of our own messages back) and
        ``retain_as_published`` are MQTT 5 subscription options: with them,
        ``version=5`` is required (``ValueError`` otherwise).
        """
        _topic(topic)
        options = _qos(qos) | (4 if no_local else 0) | (8 if retain_as_published else 0)
        if options > 3 and self._login["version"] != 5:
            raise ValueError("no_local and retain_as_published need version=5")
        self.session.subs[topic] = options
        if self._ready and self._conn is not None:
            _send_sub(self._conn, topic, options)

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe now (if connected) and forget the filter."""
        self.session.subs.pop(topic, None)
        if self._ready and self._conn is not None:
            self._conn.mqtt_unsub(topic)

    def save(self) -> None:
        """Write the session to ``session_file`` (a no-op without one)."""
        if self._session_file is not None:
            self.session.save(self._session_file)

    def close(self) -> None:
        """Stop reconnecting, send DISCONNECT, close, and save the session file."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        conn = self._conn
        if conn is not None and not conn.is_closing:
            if self._ready:
                conn.mqtt_disconnect()
            conn.drain()
        self.save()

    def _live_c(self) -> Any:
        conn = self._conn
        if not self._ready or conn is None or conn._closing:
            return None
        return conn._c

    def _connect(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self._conn = conn = self._mgr.mqtt_connect(self._url, self._on_event, **self._login)
        except RuntimeError:
            self._conn = None
            self._schedule()
            return
        if not self._mask >> _MQTT_CMD & 1:  # no handler needs an event per PUBACK
            lib.cym_mqtt_batch_acks(conn._c)

    def _schedule(self) -> None:
        if self._closed or not self._reconnect or self._mgr._freed:
            return
        low, high = self._backoff
        delay = min(high, low * (2 ** min(self._attempt, 30)))
        delay = random.uniform(delay / 2, delay)
        self._attempt += 1
        if self._on_reconnect is not None:
            self._on_reconnect(self._attempt, delay)
        self._timer = self._mgr.timer_add(max(1, int(delay * 1000)), self._connect)

    def _forward(self, conn: Connection, ev: int, data: Any) -> None:
        if self._mask >> ev & 1:
            self._handler(conn, ev, data)  # type: ignore[misc]

    @handles(C.MG_EV_CONNECT, C.MG_EV_MQTT_OPEN, C.MG_EV_MQTT_CMD, C.MG_EV_MQTT_MSG,
             C.MG_EV_ERROR, C.MG_EV_CLOSE)
    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == _MQTT_CMD:
            # every field in one C call; PUBACK, one per QoS 1 publish, first
            f = _fields(data._addr, self._at, self._span)
            cmd = f & 15
            if cmd == _PUBACK:
                session = self.session
                if f >> 24 == 1:
                    session.inflight.pop((f >> 8) & 0xFFFF, None)
                else:  # PUBACKs in a row, 4 bytes each (cym_mqtt_batch_acks)
                    session.pubacks(data.dgram)
                if session.queue and self._ready:
                    session.pump(conn._c)
            elif cmd != _PUBLISH:
                self._command(conn, cmd, (f >> 8) & 0xFFFF, data)
            self._forward(conn, ev, data)
            if cmd == _CONNACK and self._ready:
                self._forward(conn, C.MG_EV_MQTT_OPEN, 0)
        elif ev == C.MG_EV_MQTT_MSG:
            if self.session.first_delivery(data.qos, data.id):
                self._forward(conn, ev, data)
        elif ev == C.MG_EV_MQTT_OPEN:
            if data != 0:
                self._forward(conn, ev, data)  # refused; accepted ones wait for the resume
        elif ev == C.MG_EV_CLOSE:
            self._ready = False
            if conn is self._conn:
                self._conn = None
                self._schedule()
            self._forward(conn, ev, data)
        else:
            self._forward(conn, ev, data)

    def _command(self, conn: Connection, cmd: int, pid: int, msg: Any) -> None:
        """The packets other than PUBLISH and PUBACK."""
        session = self.session
        if cmd == _PUBREC or cmd == _PUBCOMP:
            if session.acked(cmd, pid) and self._ready:
                session.pump(conn._c)
        elif cmd == _PUBREL:
            session.qos2_in.discard(pid)
        elif cmd == _CONNACK and msg.ack == 0:
            dgram = msg.dgram
            present = bool(dgram[2] & 1)
            # never more in flight than the broker's Receive Maximum (MQTT-3.3.4-7)
            window = self._max_inflight
            if self._login["version"] == 5:
                try:
                    window = min(window, connack_receive_maximum(dgram))
                except Malformed:
                    pass  # the C parser took the packet; keep our own window
            session.max_inflight = window
            c = conn._c
            for packet in session.resume(c, present):
                conn.send(packet)
            self._ready = True
            self._attempt = 0
            if not present:
                for topic, options in session.subs.items():
                    _send_sub(conn, topic, options)
            session.pump(c)


def _send_sub(conn: Connection, topic: str, options: int) -> None:
    if options <= 3:
        conn.mqtt_sub(topic, options)
        return
    # Mongoose writes only the QoS into the options byte: MQTT 5 SUBSCRIBE by hand
    raw = topic.encode("utf-8")
    body = b"\x00\x01\x00" + len(raw).to_bytes(2, "big") + raw + bytes((options,))
    conn.send(b"\x82" + varint(len(body)) + body)


__all__ = ["MqttClient"]
