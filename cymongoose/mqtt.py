"""MQTT client methods of ``Manager`` and ``Connection``.

Every MQTT connection (``mqtt_connect``, and the peers accepted by
``mqtt_listen``) runs our protocol handler from ``_csrc/mqtt.c`` instead of
Mongoose's.  It behaves like Mongoose's (automatic PUBACK, PUBREC, PUBREL
and PUBCOMP; events ``MQTT_OPEN``, ``MQTT_MSG``, ``MQTT_CMD``) and adds:

* a malformed packet from the peer fires ``MG_EV_ERROR`` ("MQTT malformed
  packet") and closes that connection only;
* keep-alive in C: a client with ``keepalive`` set sends PINGREQ after half
  a keep-alive period without sending, and fails with ``MG_EV_ERROR`` ("MQTT
  keep-alive timeout") when a PINGREQ stays unanswered for a whole period;
  a broker-side connection fails the same way when its client, having
  announced a keep-alive in CONNECT, is silent for 1.5 periods;
* MQTT 5 PUBLISH packets with a payload of 0 or 1 byte are parsed right;
* broker-side connections learn the protocol version from CONNECT, so
  MQTT 5 clients of ``mqtt_listen`` are parsed (and answered) as MQTT 5.

MQTT 5 properties are given as a sequence of ``(property_id, value)`` pairs;
the id decides the value's type: an ``int`` for byte, short, int and
variable-int properties, a ``str`` or bytes-like for string and binary
properties, and a ``(key, value)`` pair of ``str`` for the user property
(``MQTT_PROP_USER_PROPERTY``, which may repeat).
"""

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple

from ._carry import carried, carried_with_answer
from ._args import to_bytes, to_cstr, to_int
from ._ffi import ffi, lib
from ._host import ConnectionHost, ManagerHost
from .constants import (MQTT_PROP_TYPE_BYTE, MQTT_PROP_TYPE_INT, MQTT_PROP_TYPE_SHORT,
                        MQTT_PROP_TYPE_STRING_PAIR, MQTT_PROP_TYPE_VARIABLE_INT)

if TYPE_CHECKING:
    from .connection import Connection, Handler

# MQTT 5 property ids (mongoose.h MQTT_PROP_*), for the ``properties`` arguments.
MQTT_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01
MQTT_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02
MQTT_PROP_CONTENT_TYPE = 0x03
MQTT_PROP_RESPONSE_TOPIC = 0x08
MQTT_PROP_CORRELATION_DATA = 0x09
MQTT_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B
MQTT_PROP_SESSION_EXPIRY_INTERVAL = 0x11
MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12
MQTT_PROP_SERVER_KEEP_ALIVE = 0x13
MQTT_PROP_AUTHENTICATION_METHOD = 0x15
MQTT_PROP_AUTHENTICATION_DATA = 0x16
MQTT_PROP_REQUEST_PROBLEM_INFORMATION = 0x17
MQTT_PROP_WILL_DELAY_INTERVAL = 0x18
MQTT_PROP_REQUEST_RESPONSE_INFORMATION = 0x19
MQTT_PROP_RESPONSE_INFORMATION = 0x1A
MQTT_PROP_SERVER_REFERENCE = 0x1C
MQTT_PROP_REASON_STRING = 0x1F
MQTT_PROP_RECEIVE_MAXIMUM = 0x21
MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22
MQTT_PROP_TOPIC_ALIAS = 0x23
MQTT_PROP_MAXIMUM_QOS = 0x24
MQTT_PROP_RETAIN_AVAILABLE = 0x25
MQTT_PROP_USER_PROPERTY = 0x26
MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27
MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

Properties = Iterable[Tuple[int, Any]]

_MAX_STR = 0xFFFF  # MQTT strings carry a 16-bit length
_MAX_PACKET = 268435455  # largest remaining length a 4-byte varint encodes
# Upper bound of an integer property's value, by MQTT_PROP_TYPE_*.
_INT_MAX = {MQTT_PROP_TYPE_BYTE: 0xFF, MQTT_PROP_TYPE_VARIABLE_INT: _MAX_PACKET,
            MQTT_PROP_TYPE_INT: 0xFFFFFFFF, MQTT_PROP_TYPE_SHORT: 0xFFFF}


def _qos(value: Any, name: str = "qos") -> int:
    """A QoS level: ``TypeError`` for a non-integer, ``ValueError`` outside 0-2."""
    try:
        return to_int(value, name, 0, 2)
    except OverflowError:
        raise ValueError("Argument '%s' must be 0, 1 or 2, got %r" % (name, value)) from None


def _topic(value: Any, name: str = "topic") -> bytes:
    raw = to_cstr(value, name)
    if len(raw) > _MAX_STR:
        raise ValueError("Argument '%s' is longer than 65535 bytes" % name)
    return raw


def _short_bytes(value: Any, name: str) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else to_bytes(value)
    if len(raw) > _MAX_STR:
        raise ValueError("%s is longer than 65535 bytes" % name)
    return raw


def _set_str(field: Any, raw: bytes, keep: List[Any]) -> None:
    """Point an ``mg_str`` at a copy of ``raw`` that ``keep`` holds alive."""
    cbuf = ffi.new("char[]", raw)
    keep.append(cbuf)
    field.buf = cbuf
    field.len = len(raw)


def _props(items: Optional[Properties], keep: List[Any]) -> Tuple[Any, int]:
    """An ``mg_mqtt_prop`` array (kept alive by ``keep``) and its length."""
    if items is None:
        return ffi.NULL, 0
    if isinstance(items, (str, bytes)):
        raise TypeError("properties must be a sequence of (property_id, value) pairs")
    pairs = list(items)
    if not pairs:
        return ffi.NULL, 0
    arr = ffi.new("struct mg_mqtt_prop[]", len(pairs))
    keep.append(arr)
    for prop, pair in zip(arr, pairs):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError("each property must be a (property_id, value) pair, got %r"
                            % (pair,))
        pid = to_int(pair[0], "property_id", 0, 255)
        kind = lib.cym_mqtt_prop_type(pid)
        if kind < 0:
            raise ValueError("unknown MQTT 5 property id %d" % pid)
        value = pair[1]
        prop.id = pid
        if kind in _INT_MAX:
            prop.iv = to_int(value, "property 0x%02x" % pid, 0, _INT_MAX[kind])
        elif kind == MQTT_PROP_TYPE_STRING_PAIR:
            if not isinstance(value, tuple) or len(value) != 2:
                raise TypeError("property 0x%02x takes a (key, value) pair of str" % pid)
            _set_str(prop.key, _short_bytes(to_cstr(value[0], "key"), "property key"), keep)
            _set_str(prop.val, _short_bytes(to_cstr(value[1], "value"), "property value"), keep)
        else:  # string or binary data
            _set_str(prop.val, _short_bytes(value, "property 0x%02x" % pid), keep)
    return arr, len(pairs)


class MqttConnectionMixin(ConnectionHost):
    """MQTT methods of :class:`Connection`.

    They write MQTT packets to any connection, without checking that it
    speaks MQTT, and raise ``RuntimeError("Connection has been closed")``
    once it is closed.  A QoS outside 0-2 and a topic longer than 65535
    bytes raise ``ValueError``.
    """

    __slots__ = ()

    @carried_with_answer
    def mqtt_pub(self, topic: str, message: Any, qos: int = 0, retain: bool = False, *,
                 properties: Optional[Properties] = None) -> int:
        """Publish ``message`` (data-like) on ``topic``.

        Returns the packet id: 0 for QoS 0, otherwise the next value of the
        Manager-wide 16-bit counter.  ``properties`` (MQTT 5 connections
        only) are sent with the PUBLISH.  Raises ``TypeError`` for a
        non-``str`` topic, ``ValueError`` for a QoS outside 0-2 or properties
        on an MQTT 3.1.1 connection.
        """
        t = _topic(topic)
        q = _qos(qos)
        buf = to_bytes(message)
        if len(buf) > _MAX_PACKET - len(t) - 4:
            raise ValueError("message is too large for one MQTT packet")
        c = self._live()
        keep: List[Any] = []
        arr, n = self._v5_props(c, properties, keep)
        return int(lib.cym_mqtt_pub(c, t, len(t), buf, len(buf), q, 1 if retain else 0, arr, n))

    @carried
    def mqtt_sub(self, topic: str, qos: int = 0, *,
                 properties: Optional[Properties] = None) -> None:
        """Subscribe to ``topic`` (wildcards allowed) at ``qos``; SUBACK follows."""
        t = _topic(topic)
        q = _qos(qos)
        c = self._live()
        keep: List[Any] = []
        arr, n = self._v5_props(c, properties, keep)
        lib.cym_mqtt_sub(c, t, len(t), q, 0, arr, n)

    @carried
    def mqtt_unsub(self, topic: str, *, properties: Optional[Properties] = None) -> None:
        """Unsubscribe from ``topic``; UNSUBACK follows."""
        t = _topic(topic)
        c = self._live()
        keep: List[Any] = []
        arr, n = self._v5_props(c, properties, keep)
        lib.cym_mqtt_sub(c, t, len(t), 0, 1, arr, n)

    @carried
    def mqtt_ping(self) -> None:
        """Send PINGREQ (clients with ``keepalive`` also ping by themselves)."""
        lib.mg_mqtt_ping(self._live())

    @carried
    def mqtt_pong(self) -> None:
        """Send PINGRESP (a broker's answer to PINGREQ)."""
        lib.mg_mqtt_pong(self._live())

    @carried
    def mqtt_disconnect(self) -> None:
        """Send DISCONNECT; the socket stays open until the broker or ``close()`` ends it."""
        lib.cym_mqtt_disconnect(self._live())

    @staticmethod
    def _v5_props(c: Any, properties: Optional[Properties], keep: List[Any]) -> Tuple[Any, int]:
        if properties is None:
            return ffi.NULL, 0
        if lib.cym_mqtt_version(c) != 5:
            raise ValueError("properties need an MQTT 5 connection (version=5)")
        return _props(properties, keep)


def _login_str(opts: Any, field: str, value: Any, name: str, keep: List[Any]) -> None:
    # A falsy value is left out; a truthy non-str raises TypeError.
    if value:
        _set_str(getattr(opts, field), _short_bytes(to_cstr(value, name), name), keep)


class MqttManagerMixin(ManagerHost):
    """``Manager.mqtt_connect``."""

    __slots__ = ()

    def mqtt_connect(self, url: str, handler: "Optional[Handler]" = None, client_id: str = "",
                     username: str = "", password: str = "", clean_session: bool = True,
                     keepalive: int = 60, *, version: int = 4,
                     properties: Optional[Properties] = None,
                     will_topic: Optional[str] = None, will_message: Any = b"",
                     will_qos: int = 0, will_retain: bool = False,
                     will_properties: Optional[Properties] = None) -> "Connection":
        """Connect to the MQTT broker at ``url`` (``mqtt://host:port``, ``mqtts://``).

        CONNECT is sent once TCP connects; the handler then gets
        ``MG_EV_MQTT_OPEN`` with the CONNACK code, ``MG_EV_MQTT_CMD`` for
        every packet and ``MG_EV_MQTT_MSG`` for each PUBLISH.  An empty
        ``client_id`` makes Mongoose pick a random one.  With ``keepalive``
        (seconds, 0 turns it off) the client pings by itself.

        Keyword-only options:

        * ``version``: 4 (MQTT 3.1.1, the default) or 5;
        * ``properties``: MQTT 5 CONNECT properties, as ``(id, value)``
          pairs (see the module docstring), e.g.
          ``[(MQTT_PROP_SESSION_EXPIRY_INTERVAL, 300)]``;
        * ``will_topic``, ``will_message`` (data-like), ``will_qos``,
          ``will_retain``, ``will_properties`` (MQTT 5): the last will, which
          the broker publishes when the connection dies without DISCONNECT.

        Raises ``TypeError`` for a non-``str`` url, topic, client id,
        username or password, ``OverflowError`` for a keep-alive outside
        0-65535, ``ValueError`` for a bad version, QoS or property, or for
        properties without ``version=5``, and ``RuntimeError("Failed to
        connect to MQTT broker '<url>'")`` when Mongoose refuses the URL.
        """
        keep: List[Any] = []
        opts = ffi.new("struct mg_mqtt_opts *")
        if isinstance(version, bool) or not isinstance(version, int) or version not in (4, 5):
            raise ValueError("version must be 4 (MQTT 3.1.1) or 5, got %r" % (version,))
        opts.version = version
        if version != 5 and (properties is not None or will_properties is not None):
            raise ValueError("properties need version=5")
        _login_str(opts, "client_id", client_id, "client_id", keep)
        _login_str(opts, "user", username, "username", keep)
        _login_str(opts, "pass", password, "password", keep)
        opts.clean = bool(clean_session)
        opts.keepalive = to_int(keepalive, "keepalive", 0, 0xFFFF)
        opts.props, opts.num_props = _props(properties, keep)
        if will_topic is not None:
            topic = _topic(will_topic, "will_topic")
            if not topic:
                raise ValueError("will_topic must not be empty")
            _set_str(opts.topic, topic, keep)
            _set_str(opts.message, _will_message(will_message), keep)
            opts.qos = _qos(will_qos, "will_qos")
            opts.retain = bool(will_retain)
            opts.will_props, opts.num_will_props = _props(will_properties, keep)
        elif will_message or will_qos or will_retain or will_properties is not None:
            raise ValueError("will_message, will_qos, will_retain and will_properties "
                             "need will_topic")

        def opener(cm: Any, raw: bytes, state: int) -> Any:
            return lib.cym_mqtt_connect(cm, raw, opts, state)

        return self._open(0, url, handler,
                          "Failed to connect to MQTT broker '%s'", opener)


def _will_message(value: Any) -> bytes:
    raw = to_bytes(value)
    if len(raw) > _MAX_STR:
        raise ValueError("will_message is longer than 65535 bytes")
    return raw

