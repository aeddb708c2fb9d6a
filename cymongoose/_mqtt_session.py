"""The client side of an MQTT session: messages in flight both ways, the offline queue.

``MqttClient`` keeps one ``ClientSession`` across its connections.  It
numbers its own QoS 1/2 publishes, keeps each one until PUBACK (QoS 1) or
PUBCOMP (QoS 2) and, after a reconnect, resends the unacknowledged ones
with DUP in their first order (a QoS 2 message already answered by PUBREC
gets PUBREL instead).  Received QoS 2 ids are remembered until PUBREL, so a
resent message is handed to the application once.  The state can be saved
to a JSON file and loaded again (``save``/``load``).
"""

import base64
import json
import os
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Set, Tuple

from ._ffi import lib

# topic, payload, QoS, retain
Message = Tuple[bytes, bytes, int, bool]

_DUP = 0x08


_publish = lib.cym_mqtt_publish


def next_pid(inflight: Mapping[int, Any], last: int) -> int:
    """The packet id after ``last`` (1-65535, wrapping) not held by ``inflight``."""
    pid = last % 0xFFFF + 1
    while pid in inflight:  # an id still in use after wrapping round
        pid = pid % 0xFFFF + 1
    return pid


def encode_message(msg: Message) -> List[Any]:
    """A message as JSON-friendly values (base64 topic and payload)."""
    return [base64.b64encode(msg[0]).decode(), base64.b64encode(msg[1]).decode(),
            msg[2], msg[3]]


def decode_message(item: List[Any]) -> Message:
    """The inverse of ``encode_message``."""
    return (base64.b64decode(item[0]), base64.b64decode(item[1]), int(item[2]), bool(item[3]))


class ClientSession:
    """Outgoing messages in flight and queued, incoming QoS 2 ids, subscriptions."""

    __slots__ = ("inflight", "released", "queue", "qos2_in", "next_pid", "max_inflight",
                 "max_queued", "subs")

    def __init__(self, max_inflight: int, max_queued: int) -> None:
        # packet id -> message; insertion order is sending order
        self.inflight: Dict[int, Message] = {}
        self.released: Set[int] = set()  # QoS 2 ids in flight answered by PUBREC
        self.queue: Deque[Message] = deque()
        self.qos2_in: Set[int] = set()
        self.next_pid = 0
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.subs: Dict[str, int] = {}  # topic filter -> QoS, re-sent to a new session

    def publish(self, c: Any, msg: Message) -> int:
        """Send now (``c`` is a live connection pointer) or queue; the packet id or 0."""
        if c is None or self.queue or (msg[2] and len(self.inflight) >= self.max_inflight):
            if len(self.queue) >= self.max_queued:
                raise BufferError("MQTT offline queue is full (max_queued=%d)"
                                  % self.max_queued)
            self.queue.append(msg)
            return 0
        return self._send(c, msg)

    def _send(self, c: Any, msg: Message) -> int:
        topic, payload, qos, retain = msg
        if not qos:
            _publish(c, topic, len(topic), payload, len(payload), retain, 0)
            return 0
        inflight = self.inflight
        pid = self.next_pid % 0xFFFF + 1
        if pid in inflight:
            pid = next_pid(inflight, pid)
        self.next_pid = pid
        inflight[pid] = msg
        if self.released:
            self.released.discard(pid)  # a stale mark, left by a broker's wrong answer
        _publish(c, topic, len(topic), payload, len(payload), (qos << 1) | retain, pid)
        return pid

    def pump(self, c: Any) -> None:
        """Send queued messages while the in-flight window has room."""
        queue, inflight, room, send = self.queue, self.inflight, self.max_inflight, self._send
        while queue and (not queue[0][2] or len(inflight) < room):
            send(c, queue.popleft())

    def pubacks(self, packets: bytes) -> None:
        """PUBACKs in a row from the broker, 4 bytes each (the id in the last two)."""
        pop = self.inflight.pop
        for i in range(2, len(packets), 4):
            pop((packets[i] << 8) | packets[i + 1], None)

    def acked(self, cmd: int, pid: int) -> bool:
        """PUBACK (4), PUBREC (5) or PUBCOMP (7); True when a message completed."""
        if pid not in self.inflight:
            return False
        if cmd == 5:
            self.released.add(pid)  # the C parser has answered with PUBREL
            return False
        del self.inflight[pid]
        self.released.discard(pid)
        return True

    def resume(self, c: Any, session_present: bool) -> List[bytes]:
        """After CONNACK: resend what is unacknowledged, then the queue.

        Returns the PUBREL packets to write (the caller owns ``send``).
        With a new session on the broker (``session_present`` false) the
        messages go out again as new ones and incoming QoS 2 ids are
        forgotten.
        """
        pubrels = []
        released = self.released
        if not session_present:
            self.qos2_in.clear()
            again = [m for pid, m in self.inflight.items() if pid not in released]
            self.inflight.clear()
            released.clear()
            self.queue.extendleft(reversed(again))
        for pid, (topic, payload, qos, retain) in self.inflight.items():
            if pid in released:
                pubrels.append(b"\x62\x02" + pid.to_bytes(2, "big"))
            else:
                _publish(c, topic, len(topic), payload, len(payload),
                         _DUP | (qos << 1) | retain, pid)
        return pubrels

    def first_delivery(self, qos: int, pid: int) -> bool:
        """Whether an incoming PUBLISH is new (a resent QoS 2 one is not)."""
        if qos != 2:
            return True
        if pid in self.qos2_in:
            return False
        self.qos2_in.add(pid)
        return True

    # -- file store ------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the session to ``path`` (JSON, replaced atomically)."""
        enc = encode_message
        state = {
            "inflight": [[pid, enc(m), pid in self.released] for pid, m in self.inflight.items()],
            "queue": [enc(m) for m in self.queue],
            "qos2_in": sorted(self.qos2_in),
            "next_pid": self.next_pid,
            "subs": self.subs,
        }
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, path)

    def load(self, path: str) -> bool:
        """Read a session saved by ``save``; False when ``path`` does not exist."""
        try:
            with open(path, "r", encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return False
        dec = decode_message
        self.inflight = {int(pid): dec(m) for pid, m, _ in state["inflight"]}
        self.released = set(int(pid) for pid, _, rel in state["inflight"] if rel)
        self.queue = deque(dec(m) for m in state["queue"])
        self.qos2_in = set(int(p) for p in state["qos2_in"])
        self.next_pid = int(state["next_pid"])
        self.subs = {str(k): int(v) for k, v in state["subs"].items()}
        return True

