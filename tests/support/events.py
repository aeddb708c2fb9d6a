"""The event recorder handlers share: the poll thread records, the test thread reads."""

import threading
from typing import Any, List, Tuple

import cymongoose as cm


class EventLog:
    """``(conn_id, ev, detail)`` triples behind a lock; subclasses decide what to record."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[Tuple[int, int, Any]] = []

    def record(self, conn: cm.Connection, ev: int, detail: Any) -> None:
        with self.lock:
            self.events.append((conn.id, ev, detail))

    def of(self, ev: int) -> List[Tuple[int, Any]]:
        """``(conn_id, detail)`` of every recorded ``ev``, in order."""
        with self.lock:
            return [(cid, d) for cid, e, d in self.events if e == ev]
