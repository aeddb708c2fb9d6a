"""The broker's reading and writing of MQTT packets (3.1.1 and 5).

Our C parser has already checked each packet's fixed header and length; the
fields Mongoose leaves unparsed (CONNECT payload, SUBSCRIBE and UNSUBSCRIBE
filters, MQTT 5 properties) are read here.  A broken packet raises
``Malformed``.
"""

from typing import List, NamedTuple, Optional, Tuple

from ._ffi import ffi, lib


class Malformed(Exception):
    """A packet that breaks the MQTT rules; ``code`` is the MQTT 5 reason
    code of the DISCONNECT that tells the client (0x82 Protocol Error by
    default)."""

    def __init__(self, why: str, code: int = 0x82) -> None:
        super().__init__(why)
        self.code = code


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


def shared_filter(topic_filter: str) -> bool:
    """Whether ``$share/NAME/FILTER`` is a well-formed shared subscription:
    a name without wildcards, and a filter (MQTT 5 section 4.8.2)."""
    parts = topic_filter.split("/", 2)
    return (len(parts) == 3 and bool(parts[1]) and "+" not in parts[1] and "#" not in parts[1]
            and valid_filter(parts[2]))


def varint(n: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Reader:
    """Reads the fields of one packet; running short raises ``Malformed``."""

    __slots__ = ("buf", "pos")

    def __init__(self, packet: bytes) -> None:
        pos = 1
        while packet[pos] & 0x80:  # remaining length, already checked by the C parser
            pos += 1
        self.buf = packet
        self.pos = pos + 1

    @classmethod
    def over(cls, data: bytes) -> "Reader":
        """A Reader of ``data`` itself (a field's bytes, not a packet)."""
        r = cls.__new__(cls)
        r.buf, r.pos = data, 0
        return r

    def more(self) -> bool:
        return self.pos < len(self.buf)

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise Malformed("packet too short")
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise Malformed("field runs past the packet")
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def blob(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("string is not UTF-8") from None

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.u8()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 21:
                raise Malformed("variable integer too long")

    def properties(self) -> bytes:
        """An MQTT 5 property block, raw."""
        return self.take(self.varint())


_SESSION_EXPIRY = 0x11
# CONNECT properties with a fixed size: Session Expiry Interval, Receive
# Maximum, Maximum Packet Size, Topic Alias Maximum, Request Response
# Information, Request Problem Information.
_CONNECT_SIZES = {0x11: 4, 0x21: 2, 0x27: 4, 0x22: 2, 0x19: 1, 0x17: 1}


_RECEIVE_MAXIMUM = 0x21
_MAXIMUM_PACKET_SIZE = 0x27


def connect_properties(props: bytes) -> Tuple[int, int, int]:
    """The Session Expiry Interval (0 if absent), Receive Maximum (65535
    if absent) and Maximum Packet Size (0 if absent) in a CONNECT's raw MQTT
    5 properties.  Raises ``Malformed``
    for what MQTT 5 section 3.1.2.11 calls a protocol error: a property
    other than User Property given twice, a Receive Maximum or Maximum
    Packet Size of 0, or a Request Response or Request Problem Information
    other than 0 or 1."""
    seen = set()
    expiry = max_packet = 0
    receive_max = 65535
    for pid, i in walk_properties(props, "CONNECT"):
        if pid in seen:
            raise Malformed("CONNECT property 0x%02x given twice" % pid)
        seen.add(pid)
        if pid in _CONNECT_SIZES:
            value = int.from_bytes(props[i:i + _CONNECT_SIZES[pid]], "big")
            if (pid in (0x21, 0x27) and value == 0) or (pid in (0x19, 0x17) and value > 1):
                raise Malformed("CONNECT property 0x%02x has the value %d" % (pid, value))
            if pid == _SESSION_EXPIRY:
                expiry = value
            elif pid == _RECEIVE_MAXIMUM:
                receive_max = value
            elif pid == _MAXIMUM_PACKET_SIZE:
                max_packet = value
        elif pid not in (0x15, 0x16):  # authentication method / data
            raise Malformed("CONNECT property 0x%02x" % pid)
    return expiry, receive_max, max_packet


def walk_properties(props: bytes, what: str) -> List[Tuple[int, int]]:
    """The id and value offset of each property in an MQTT 5 property block
    but User Property; ``Malformed`` (``what`` names the packet) for a block
    with an unknown id, one that runs short or a string that is not UTF-8,
    or more than 32 such properties (some id given twice: callers check
    duplicates among fewer).  The walk is in C (``cym_mqtt_props_walk``): a
    packet may hold a few MB of User Properties."""
    cap = 32
    ids = ffi.new("uint8_t[]", cap)
    at = ffi.new("size_t[]", cap)
    k = lib.cym_mqtt_props_walk(props, len(props), ids, at, cap)
    if k == -1:
        raise Malformed("%s properties: an unknown one, one that runs short or a string "
                        "that is not UTF-8" % what)
    if k < 0:
        raise Malformed("%s properties: some given twice" % what)
    return [(ids[i], int(at[i])) for i in range(k)]


def message_properties(props: bytes, will: bool = False) -> Tuple[bytes, int]:
    """The properties of a PUBLISH (or, ``will``, of a will) to pass on as
    they came (MQTT 5 section 3.3.2.3), and its Message Expiry Interval in
    seconds (-1: none), which goes on as what is left of it; a will's Will
    Delay Interval is the broker's.  Raises ``Malformed`` for a property
    such a packet may not carry, one given twice (other than User
    Property), a string that is not UTF-8, a Payload Format Indicator other
    than 0 or 1, a Response Topic with a wildcard, or a Topic Alias (0x94:
    the broker's CONNACK allows none); ``_csrc/mqtt_broker.c`` checks them."""
    cut = ffi.new("size_t[3]")
    code = lib.cym_mqtt_props_check(props, len(props), 1 if will else 0, cut)
    what = "will" if will else "PUBLISH"
    if code == 0x94:
        raise Malformed("%s with a Topic Alias (none allowed)" % what, code)
    if code:
        raise Malformed("%s properties: one it may not carry, given twice, or a bad value"
                        % what, code)
    n = len(props)
    expiry_at, delay_at = int(cut[0]), int(cut[2])
    if expiry_at == n and delay_at == n:
        return props, -1
    keep = bytearray(props)
    for at in sorted((at for at in (expiry_at, delay_at) if at < n), reverse=True):
        del keep[at:at + 5]
    return bytes(keep), int(cut[1]) if expiry_at < n else -1


def connack_receive_maximum(packet: bytes) -> int:
    """The Receive Maximum of an MQTT 5 CONNACK: how many QoS 1/2
    publishes the broker takes unacknowledged (65535 when absent).
    ``Malformed`` for a broken property block."""
    r = Reader(packet)
    r.u8()  # session present
    r.u8()  # reason code
    if not r.more():
        return 65535
    props = r.properties()
    for prop, i in walk_properties(props, "CONNACK"):
        if prop == _RECEIVE_MAXIMUM:
            return int.from_bytes(props[i:i + 2], "big") or 65535
    return 65535


def disconnect_expiry(packet: bytes) -> Optional[int]:
    """The Session Expiry Interval an MQTT 5 DISCONNECT sets, or None."""
    if len(packet) < 4:  # no reason code, or no properties
        return None
    r = Reader(packet)
    r.u8()  # reason code
    props = r.properties()
    expiry = None
    for prop, i in walk_properties(props, "DISCONNECT"):
        if prop == _SESSION_EXPIRY and expiry is None:
            expiry = int.from_bytes(props[i:i + 4], "big")
        elif prop not in (0x1F, 0x1C):  # Reason String, Server Reference
            raise Malformed("DISCONNECT property 0x%02x" % prop)
    return expiry


class Connect(NamedTuple):
    """What a CONNECT packet asks for."""

    version: int  # 3 (MQTT 3.1), 4 or 5; 0: another protocol, refused unread
    clean: bool
    client_id: str
    #: topic, payload, QoS, retain, MQTT 5 properties passed on, Message
    #: Expiry Interval (-1: none), as ``message_properties`` reads them
    will: Optional[Tuple[str, bytes, int, bool, bytes, int]]
    username: Optional[str]
    password: Optional[bytes]
    expiry: int  # MQTT 5 Session Expiry Interval; 0 for 3.1.1
    receive_max: int  # MQTT 5 Receive Maximum (QoS 1/2 PUBLISHes unacknowledged); 65535
    max_packet: int  # MQTT 5 Maximum Packet Size the client takes; 0: no limit


#: The protocol names and levels the broker speaks: MQTT 3.1 ("MQIsdp"
#: level 3, which older devices and mosquitto still speak; on the wire it
#: differs from 3.1.1 only in CONNECT and CONNACK), 3.1.1 and 5.
_PROTOCOLS = {(b"MQIsdp", 3), (b"MQTT", 4), (b"MQTT", 5)}


def parse_connect(packet: bytes) -> Connect:
    """Read CONNECT; a protocol other than MQTT 3.1, 3.1.1 or 5 comes back
    with ``version`` 0 and nothing else read."""
    r = Reader(packet)
    name = r.blob()
    level = r.u8()
    if (name, level) not in _PROTOCOLS:
        return Connect(0, True, "", None, None, None, 0, 65535, 0)
    flags = r.u8()
    r.u16()  # keep-alive: enforced by the C parser
    will_flag, will_qos, will_retain = flags & 0x04, (flags >> 3) & 3, flags & 0x20
    if flags & 0x01 or will_qos == 3 or (not will_flag and (will_qos or will_retain)) \
            or (level != 5 and flags & 0x40 and not flags & 0x80):
        raise Malformed("bad CONNECT flags 0x%02x" % flags)
    expiry, receive_max, max_packet = (connect_properties(r.properties()) if level == 5
                                       else (0, 65535, 0))
    client_id = r.text()
    will = None
    if will_flag:
        props, will_expiry = (message_properties(r.properties(), True) if level == 5
                              else (b"", -1))
        will_topic = r.text()
        if not will_topic or "+" in will_topic or "#" in will_topic:
            raise Malformed("bad will topic")
        will = (will_topic, r.blob(), will_qos, bool(will_retain), props, will_expiry)
    username = r.text() if flags & 0x80 else None
    password = r.blob() if flags & 0x40 else None
    if r.more():
        raise Malformed("bytes after the CONNECT payload")
    return Connect(level, bool(flags & 0x02), client_id, will, username, password, expiry,
                   receive_max, max_packet)


_SUBSCRIPTION_IDENTIFIER = 0x0B


def _opening(packet: bytes, v5: bool, name: str) -> Tuple[Reader, int]:
    """Check the flags of (UN)SUBSCRIBE, read its packet id and its
    properties: a Subscription Identifier, which the broker's CONNACK says it
    does not support, is a protocol error (MQTT 5 section 3.8.2.1.2)."""
    if packet[0] & 0x0F != 2:
        raise Malformed("bad %s flags" % name)
    r = Reader(packet)
    pid = r.u16()
    if v5:
        for prop, _ in walk_properties(r.properties(), name):
            if prop == _SUBSCRIPTION_IDENTIFIER:
                raise Malformed("%s with a Subscription Identifier (not supported)" % name)
            raise Malformed("%s property 0x%02x" % (name, prop))
    return r, pid


#: Subscription options a session keeps with a filter's granted QoS (MQTT 5
#: section 3.8.3.1): No Local, Retain As Published.
NO_LOCAL, RETAIN_AS_PUBLISHED = 0x04, 0x08


def parse_subscribe(packet: bytes, v5: bool) -> Tuple[int, List[Tuple[str, int]]]:
    """Packet id and ``(filter, options)`` pairs of SUBSCRIBE: the options
    byte holds the requested QoS in its low two bits, and for MQTT 5
    ``NO_LOCAL``, ``RETAIN_AS_PUBLISHED`` and the Retain Handling (bits 4
    and 5)."""
    r, pid = _opening(packet, v5, "SUBSCRIBE")
    wanted = []
    while r.more():
        topic_filter = r.text()
        options = r.u8()
        # QoS 3, reserved bits, or (MQTT 5) Retain Handling 3: protocol errors
        if options & 3 == 3 or options & (0xC0 if v5 else 0xFC) or options & 0x30 == 0x30:
            raise Malformed("bad subscription options 0x%02x" % options)
        wanted.append((topic_filter, options))
    if not wanted:
        raise Malformed("SUBSCRIBE without topic filters")
    return pid, wanted


def parse_unsubscribe(packet: bytes, v5: bool) -> Tuple[int, List[str]]:
    """Packet id and filters of UNSUBSCRIBE."""
    r, pid = _opening(packet, v5, "UNSUBSCRIBE")
    filters = []
    while r.more():
        filters.append(r.text())
    if not filters:
        raise Malformed("UNSUBSCRIBE without topic filters")
    return pid, filters


#: What an MQTT 5 CONNACK tells the client the broker lacks (section
#: 3.2.2.3): Subscription Identifiers Available 0.  No Topic Alias Maximum:
#: 0, no topic aliases.
CONNACK5_PROPERTIES = b"\x29\x00"


def connack(v5: bool, session_present: bool, code: int, assigned: str = "") -> bytes:
    """CONNACK with ``code`` (a 3.1.1 return code or an MQTT 5 reason code);
    ``assigned``: the client id the broker chose for a client that sent an
    empty one (MQTT 5 Assigned Client Identifier, MQTT-3.2.2-16)."""
    flags = 1 if session_present and code == 0 else 0
    if v5:
        if code:
            return bytes((0x20, 3, flags, code, 0))
        props = CONNACK5_PROPERTIES
        if assigned:
            name = assigned.encode("utf-8")
            props += b"\x12" + len(name).to_bytes(2, "big") + name
        body = bytes((flags, code)) + varint(len(props)) + props
        return b"\x20" + varint(len(body)) + body
    return bytes((0x20, 2, flags, code))


def suback(v5: bool, pid: int, codes: bytes) -> bytes:
    body = pid.to_bytes(2, "big") + (b"\x00" if v5 else b"") + codes
    return b"\x90" + varint(len(body)) + body


def unsuback(v5: bool, pid: int, codes: bytes) -> bytes:
    if not v5:
        return b"\xb0\x02" + pid.to_bytes(2, "big")
    body = pid.to_bytes(2, "big") + b"\x00" + codes
    return b"\xb0" + varint(len(body)) + body


def disconnect(code: int) -> bytes:
    """An MQTT 5 DISCONNECT with reason ``code`` and no properties."""
    return bytes((0xE0, 2, code, 0))


def pubrel(pid: int) -> bytes:
    return b"\x62\x02" + pid.to_bytes(2, "big")
