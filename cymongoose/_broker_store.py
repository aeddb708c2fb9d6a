"""``MqttBroker``'s persistence file: kept sessions and retained messages as JSON.

Written by ``MqttBroker.close()`` (atomically: a temporary file replaces
the old one) and read when a broker starts with the same file, so a
restarted broker resumes its clients' sessions, as mosquitto does with
``persistence true``.  Messages in flight are saved first, in order, then
the queue; they are resent with DUP when their client comes back.
"""

import base64
import json
import os
import time
from collections import OrderedDict, deque
from typing import Any, Dict, Iterable, List, Tuple

from ._broker_session import Message, Session
from ._mqtt_session import decode_message as client_decode
from ._mqtt_session import encode_message as client_encode


def encode_message(msg: Message) -> List[Any]:
    """A message as JSON-friendly values: the client's four (base64 topic
    and payload, QoS, retain), then base64 properties and expiry."""
    return client_encode(msg[:4]) + [base64.b64encode(msg[4]).decode(), msg[5]]


def decode_message(item: List[Any]) -> Message:
    """The inverse of ``encode_message``; a file from before MQTT 5
    properties were kept has the first four fields only."""
    topic, data, qos, retain = client_decode(item[:4])
    return (topic, data, qos, retain, base64.b64decode(item[4]) if len(item) > 4 else b"",
            int(item[5]) if len(item) > 5 else 0)


Retained = Tuple[bytes, int, bytes, int]


def save(path: str, sessions: Iterable[Session], retained: Dict[str, Retained]) -> None:
    """Write the persistent sessions and the retained messages to ``path``."""
    saved = []
    for s in sessions:
        if s.persistent:
            inflight, queue, next_pid = s.snapshot()
            saved.append({
                "client_id": s.client_id, "username": s.username, "subs": s.subs,
                "expiry": s.expiry,
                "inflight": [[pid, encode_message(m), rel] for pid, (m, rel) in inflight.items()],
                "queue": [encode_message(m) for m in queue], "qos2_in": sorted(s.qos2_in),
                "next_pid": next_pid,
            })
    state = {
        "sessions": saved,
        "retained": {t: [base64.b64encode(d).decode(), q, base64.b64encode(p).decode(), x]
                     for t, (d, q, p, x) in retained.items() if not t.startswith("$SYS/")},
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def load(path: str, max_inflight: int, max_queued: int
         ) -> Tuple[Dict[str, Session], Dict[str, Retained]]:
    """Sessions by client id and retained messages from ``path`` (empty when it is missing).

    Raises ``ValueError`` for a file that is not one of ours.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return {}, {}
    try:
        sessions = {}
        for item in state["sessions"]:
            s = Session(str(item["client_id"]), max_inflight, max_queued)
            s.username = item["username"]
            s.persistent = True
            # (counted again from the load: the file does not say how long ago it went)
            expiry = item.get("expiry")
            s.expiry = None if expiry is None else int(expiry)
            s.left_at = time.monotonic()
            s.subs = {str(k): int(v) for k, v in item["subs"].items()}
            s.inflight = OrderedDict((int(pid), [decode_message(m), bool(rel)])
                                     for pid, m, rel in item["inflight"])
            s.queue = deque(decode_message(m) for m in item["queue"])
            s.qos2_in = set(int(p) for p in item["qos2_in"])
            s.next_pid = int(item["next_pid"])
            sessions[s.client_id] = s
        retained = {str(t): (base64.b64decode(v[0]), int(v[1]),
                             base64.b64decode(v[2]) if len(v) > 2 else b"",
                             int(v[3]) if len(v) > 3 else 0)
                    for t, v in state["retained"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("%s is not an MqttBroker persistence file: %r" % (path, exc)) from None
    return sessions, retained
