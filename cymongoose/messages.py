"""Message views: borrowed, lazily decoded, dead after the handler returns.

A view wraps the address of a Mongoose struct that is valid only while the
handler that received it runs.  Nothing is decoded until a
property is read; every read returns a fresh copy; after the handler returns
the dispatcher invalidates the view and reads give the documented defaults.
"""

import platform
from typing import Any, Dict, List, Optional, Tuple

from ._args import text, to_cstr
from ._ffi import ffi, lib
from .errors import check

_TOO_BIG = int(lib.CYM_E_TOO_BIG)

_unpack = ffi.unpack
_cast = ffi.cast

if platform.python_implementation() == "PyPy":
    # PyPy's JIT turns cdata field reads into plain loads, while a C call
    # stays a call: read the fields (bench/count.py: 5.7k -> 5.4k
    # instructions per WebSocket echo).
    def _str_buf(addr: int) -> Any:
        return _cast("struct mg_str *", addr).buf

    def _str_len(addr: int) -> int:
        return int(_cast("struct mg_str *", addr).len)

    def _ws_flags(addr: int) -> int:
        return int(_cast("struct mg_ws_message *", addr).flags)
else:
    # On CPython each cast or field read costs cffi a conversion: one C call
    # for each is cheaper.
    _str_buf = lib.cym_str_buf
    _str_len = lib.cym_str_len
    _ws_flags = lib.cym_ws_flags


def _bytes(s: Any) -> bytes:
    n = s.len
    return _unpack(s.buf, n) if n else b""


def _bytes_at(addr: int) -> bytes:
    """The bytes of the ``struct mg_str`` at ``addr``.

    Views read their strings by address: two plain C calls cost cffi less
    than casting the address to a struct and walking its fields (on CPython
    ~0.3 us against ~1 us per read; bench/README.md).
    """
    n = _str_len(addr)
    return _unpack(_str_buf(addr), n) if n else b""


def _offsets(ctype: str, *fields: str) -> List[int]:
    return [ffi.offsetof(ctype, f) for f in fields]


_HM_METHOD, _HM_URI, _HM_QUERY, _HM_PROTO, _HM_BODY = _offsets(
    "struct mg_http_message", "method", "uri", "query", "proto", "body")
_WS_DATA, = _offsets("struct mg_ws_message", "data")
_MQ_TOPIC, _MQ_DATA, _MQ_DGRAM = _offsets("struct mg_mqtt_message", "topic", "data", "dgram")


class _View:
    __slots__ = ("_addr", "_p")
    _CTYPE = "void *"

    def __init__(self) -> None:
        self._addr = 0
        self._p: Any = None

    @classmethod
    def _bind(cls, addr: int) -> "_View":
        view = cls.__new__(cls)
        view._addr = addr
        view._p = None
        return view

    def _ptr(self) -> Any:
        # The dispatcher sets only _addr (and zeroes it when the event ends):
        # _p is a cache that may be unset or stale, so _addr decides.
        addr = self._addr
        if not addr:
            return None
        p = getattr(self, "_p", None)
        if p is None:
            p = self._p = _cast(self._CTYPE, addr)
        return p

    def _invalidate(self) -> None:
        self._addr = 0
        self._p = None

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '%s' object" % type(self).__name__)


class HttpMessage(_View):
    """An HTTP request or response (events HTTP_HDRS, HTTP_MSG, WS_OPEN)."""

    __slots__ = ()
    _CTYPE = "struct mg_http_message *"

    def __bool__(self) -> bool:
        return bool(self._addr)

    @property
    def method(self) -> str:
        """Request method, e.g. ``"GET"``; for a response, the protocol."""
        a = self._addr
        return text(_bytes_at(a + _HM_METHOD)) if a else ""

    @property
    def uri(self) -> str:
        """Request path, still percent-encoded; for a response, the status code."""
        a = self._addr
        return text(_bytes_at(a + _HM_URI)) if a else ""

    @property
    def query(self) -> str:
        """Raw query string without ``?``; ``""`` when absent."""
        a = self._addr
        return text(_bytes_at(a + _HM_QUERY)) if a else ""

    @property
    def proto(self) -> str:
        """Protocol of a request; reason phrase of a response."""
        a = self._addr
        return text(_bytes_at(a + _HM_PROTO)) if a else ""

    @property
    def body_bytes(self) -> bytes:
        """The body as bytes (what is buffered so far, for HTTP_HDRS)."""
        a = self._addr
        return _bytes_at(a + _HM_BODY) if a else b""

    @property
    def body_text(self) -> str:
        """The body decoded as UTF-8 (surrogateescape)."""
        return text(self.body_bytes)

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Value of the first header named ``name`` (case-insensitive), else ``default``."""
        key = to_cstr(name, "name")
        p = self._ptr()
        if p is None:
            return default
        s = lib.mg_http_get_header(p, key)
        if s == ffi.NULL:
            return default
        return text(_bytes(s))

    def headers(self) -> List[Tuple[str, str]]:
        """All headers as ``(name, value)`` in wire order, duplicates included."""
        p = self._ptr()
        if p is None:
            return []
        out = []
        for h in p.headers:
            if h.name.len == 0:
                break
            out.append((text(_bytes(h.name)), text(_bytes(h.value))))
        return out

    def query_var(self, name: str) -> Optional[str]:
        """URL-decoded value of query variable ``name``; ``None`` if absent or empty.

        Raises ``ValueError`` when the decoded value needs 2048 bytes or more,
        or contains a malformed ``%`` escape (Mongoose reports both alike).
        """
        key = to_cstr(name, "name")
        p = self._ptr()
        if p is None:
            return None
        buf = ffi.new("char[2048]")
        n = lib.cym_http_var(ffi.addressof(p, "query"), key, buf, 2048)
        if n < 0:
            check(n, {_TOO_BIG: "Query parameter '%s' value exceeds 2048-byte buffer limit"
                      % name})
        if n == 0:
            return None
        return text(_unpack(buf, n))

    def status(self) -> Optional[int]:
        """Response status code; 0 for requests; ``None`` once the view is dead."""
        p = self._ptr()
        if p is None:
            return None
        return int(lib.mg_http_status(p))

    def header_var(self, header_name: str, var_name: str) -> Optional[str]:
        """Sub-field ``var_name`` of header ``header_name`` (e.g. ``charset``)."""
        h = to_cstr(header_name, "header_name")
        v = to_cstr(var_name, "var_name")
        p = self._ptr()
        if p is None:
            return None
        s = lib.cym_header_var(p, h, v)
        if s.len == 0:
            return None
        return text(_unpack(s.buf, s.len))


class WsMessage(_View):
    """A WebSocket message (event WS_MSG); fragmented messages arrive whole."""

    __slots__ = ()
    _CTYPE = "struct mg_ws_message *"

    def __bool__(self) -> bool:
        return True

    @property
    def data(self) -> bytes:
        """The payload as bytes."""
        a = self._addr
        if not a:
            return b""
        a += _WS_DATA
        n = _str_len(a)
        return _unpack(_str_buf(a), n) if n else b""

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (surrogateescape)."""
        return text(self.data)

    @property
    def flags(self) -> int:
        """The raw first header byte: FIN bit and opcode (0x81 text, 0x82 binary)."""
        a = self._addr
        return _ws_flags(a) if a else 0


class _WsMessageCopy(WsMessage):
    """A WsMessage delivered in a poll's batch (``_dispatch.deliver_batch``):
    C copied its payload before the handler ran.  Its ``data`` and
    ``flags`` are plain slots, which shadow WsMessage's properties and cost
    CPython no call to read.  It dies with the event like any view."""

    __slots__ = {"data": "The payload as bytes.",
                 "flags": "The raw first header byte: FIN bit and opcode (0x81 text, 0x82 binary)."}

    def _invalidate(self) -> None:
        self.data = b""  # type: ignore[misc]
        self.flags = 0  # type: ignore[misc]


class MqttMessage(_View):
    """An MQTT packet (events MQTT_MSG and MQTT_CMD)."""

    __slots__ = ()
    _CTYPE = "struct mg_mqtt_message *"

    def __bool__(self) -> bool:
        return True

    @property
    def topic(self) -> str:
        """PUBLISH topic; ``""`` for other packets."""
        a = self._addr
        return text(_bytes_at(a + _MQ_TOPIC)) if a else ""

    @property
    def data(self) -> bytes:
        """PUBLISH payload."""
        a = self._addr
        return _bytes_at(a + _MQ_DATA) if a else b""

    @property
    def text(self) -> str:
        """PUBLISH payload decoded as UTF-8 (surrogateescape)."""
        return text(self.data)

    @property
    def id(self) -> int:
        """Packet id (QoS>0 PUBLISH, acks, SUBACK, UNSUBACK); 0 otherwise."""
        p = self._ptr()
        return int(p.id) if p is not None else 0

    @property
    def cmd(self) -> int:
        """Packet type (1 CONNECT ... 15 AUTH)."""
        p = self._ptr()
        return int(p.cmd) if p is not None else 0

    @property
    def qos(self) -> int:
        """QoS from the fixed header."""
        p = self._ptr()
        return int(p.qos) if p is not None else 0

    @property
    def ack(self) -> int:
        """CONNACK return code; 0 when not applicable."""
        p = self._ptr()
        return int(p.ack) if p is not None else 0

    @property
    def retain(self) -> bool:
        """PUBLISH retain flag (our addition).

        From a broker: a retained message sent for a new subscription; to a
        broker: the publisher asks it to retain the message.
        """
        p = self._ptr()
        if p is None or p.cmd != 3:
            return False
        return bool(_unpack(p.dgram.buf, 1)[0] & 1)

    @property
    def dgram(self) -> bytes:
        """The whole raw packet, fixed header included (our addition).

        A broker reads what Mongoose does not parse from it, such as the
        CONNECT payload or a SUBSCRIBE's topic filters.
        """
        a = self._addr
        return _bytes_at(a + _MQ_DGRAM) if a else b""

    def properties(self) -> List[Dict[str, Any]]:
        """MQTT 5 properties as dicts with keys ``id``, ``iv``, ``key``, ``val``."""
        p = self._ptr()
        if p is None or p.props_size == 0:
            return []
        out = []
        prop = ffi.new("struct mg_mqtt_prop *")
        ofs = 0
        while True:
            ofs = lib.mg_mqtt_next_prop(p, prop, ofs)
            if ofs == 0:
                break
            out.append(
                {
                    "id": int(prop.id),
                    "iv": int(prop.iv),
                    "key": text(_bytes(prop.key)),
                    "val": text(_bytes(prop.val)),
                }
            )
        return out


def valid_message(message: Any) -> HttpMessage:
    """``message`` if it is a live ``HttpMessage``; ``TypeError``/``ValueError`` otherwise."""
    if message is not None and not isinstance(message, HttpMessage):
        raise TypeError(
            "Argument 'message' has incorrect type (expected HttpMessage, got %s)"
            % type(message).__name__
        )
    if message is None or not message:
        raise ValueError("HttpMessage is not valid for this event")
    return message
