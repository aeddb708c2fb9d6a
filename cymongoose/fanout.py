"""Fan-out across processes and machines through an MQTT broker.

A WebSocket broadcast reaches only the clients of the process that sends
it.  With several workers (or machines) each process keeps a
:class:`Fanout` connected to one broker (mosquitto, or an EMQX/HiveMQ
cluster); ``publish(channel, data)`` sends to the topic ``prefix +
channel`` and every process, the sender included, receives it through
``on_message(channel, data)`` and delivers it to its own clients.  Every
message takes the same path, so all processes see one channel's messages
in the broker's order.

Delivery is what MQTT QoS 0 gives: at most once, no replay for a process
that was disconnected.  While the broker is unreachable, ``publish`` keeps
up to ``queue_limit`` messages and sends them on reconnect (the oldest are
dropped beyond that); the connection is retried every ``retry_ms``
milliseconds, doubling up to 10 s.  Everything runs on the Manager's poll
thread: call ``publish`` from a handler or timer, or through
``Manager.call_soon_threadsafe``.
"""

import logging
import os
import uuid
from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from . import constants as C
from .connection import Connection
from .manager import Manager

__all__ = ["Fanout"]

log = logging.getLogger("cymongoose.fanout")

_RETRY_MAX_MS = 10000


class Fanout:
    """Relay messages between processes through MQTT topics under ``prefix``.

    Args:
        mgr: the Manager whose poll thread runs the relay.
        url: the broker, ``mqtt://host:port`` (``mqtts://`` needs TLS set up
            on the Manager as for ``mqtt_connect``).
        on_message: ``on_message(channel, data)`` for every message
            published under ``prefix`` by any process (bytes ``data``).
        prefix: topic prefix shared by the cooperating processes; ends with
            ``/``.
        queue_limit: messages kept while the broker is unreachable.
        retry_ms: first reconnection delay.
        username, password: broker login, if it needs one.

    Raises ``ValueError`` for a prefix without a trailing ``/`` or with
    MQTT wildcards.
    """

    def __init__(self, mgr: Manager, url: str, on_message: Callable[[str, bytes], Any],
                 prefix: str = "cymongoose/fanout/", queue_limit: int = 1000,
                 retry_ms: int = 250, username: str = "", password: str = "") -> None:
        if not prefix.endswith("/") or "+" in prefix or "#" in prefix:
            raise ValueError("prefix must end with '/' and hold no MQTT wildcard: %r" % prefix)
        self.mgr = mgr
        self.url = url
        self.on_message = on_message
        self.prefix = prefix
        self.client_id = "cym-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self._login = (username, password)
        self._pending: Deque[Tuple[str, bytes]] = deque(maxlen=queue_limit)
        self._first_retry = self._retry = retry_ms
        self._conn: Optional[Connection] = None
        self._ready = False
        self._closed = False
        self._connect()

    @property
    def connected(self) -> bool:
        """True while subscribed at the broker."""
        return self._ready

    def publish(self, channel: str, data: Any) -> None:
        """Send ``data`` (bytes or str) to every process's ``on_message(channel, ...)``."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        conn = self._conn
        if self._ready and conn is not None:
            conn.mqtt_pub(self.prefix + channel, payload)
        else:
            self._pending.append((channel, payload))

    def close(self) -> None:
        """Disconnect from the broker and stop reconnecting."""
        self._closed = True
        conn, self._conn = self._conn, None
        self._ready = False
        if conn is not None and not conn.is_closing:
            try:
                conn.mqtt_disconnect()
            except RuntimeError:
                pass
            conn.drain()

    def _connect(self) -> None:
        if self._closed:
            return
        try:
            self._conn = self.mgr.mqtt_connect(
                self.url, self._on_event, client_id=self.client_id, keepalive=30,
                username=self._login[0], password=self._login[1])
        except RuntimeError as exc:
            log.warning("fan-out: cannot connect to %s: %s", self.url, exc)
            self._reconnect_later()

    def _reconnect_later(self) -> None:
        if self._closed:
            return
        delay, self._retry = self._retry, min(self._retry * 2, _RETRY_MAX_MS)
        self.mgr.timer_add(delay, self._connect)

    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == C.MG_EV_MQTT_OPEN:
            if data != 0:
                log.warning("fan-out: broker %s refused the connection (code %s)",
                            self.url, data)
                return
            conn.mqtt_sub(self.prefix + "#")
            self._ready = True
            self._retry = self._first_retry
            while self._pending:
                channel, payload = self._pending.popleft()
                conn.mqtt_pub(self.prefix + channel, payload)
        elif ev == C.MG_EV_MQTT_MSG:
            topic = data.topic
            if topic.startswith(self.prefix):
                self.on_message(topic[len(self.prefix):], data.data)
        elif ev == C.MG_EV_CLOSE:
            if conn is self._conn:
                self._conn = None
                self._ready = False
                if not self._closed:
                    log.warning("fan-out: lost the broker %s; reconnecting", self.url)
                    self._reconnect_later()
