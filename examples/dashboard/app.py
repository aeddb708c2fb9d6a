"""The dashboard server: one Manager serves the page, its API, a WebSocket
of live values and an MQTT broker, all on one thread."""

import gzip
import hashlib
import json
import os
import shutil
import signal
import tempfile
from typing import Any, Dict, Optional, Set

import cymongoose as cm
from cymongoose.broker import topic_matches, valid_filter
from auth import Auth, cookie_token
from metrics import Rates, rss_bytes
from settings_store import SettingsError, SettingsStore

HERE = os.path.dirname(os.path.abspath(__file__))
#: Largest upload accepted by default (Mongoose buffers a body whole, up to
#: its 3 MiB receive limit).
MAX_UPLOAD = 1024 * 1024
UPLOAD_CEILING = 2 * 1024 * 1024 + 512 * 1024
#: Filters one page may subscribe to, and the topics remembered for the page.
MAX_FILTERS = 16
MAX_TOPICS = 200
_JSON = {"Content-Type": "application/json"}
_GZIPPED = (".html", ".js", ".css", ".svg")


def prepare_static(src: str) -> str:
    """A copy of ``src`` in a temporary folder with a ``.gz`` twin of each
    text asset, which ``serve_dir`` sends to clients that accept gzip."""
    dst = tempfile.mkdtemp(prefix="cym-dashboard-")
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        shutil.copy2(path, os.path.join(dst, name))
        if name.endswith(_GZIPPED):
            with open(path, "rb") as f, gzip.open(os.path.join(dst, name + ".gz"), "wb") as g:
                g.write(f.read())
    return dst


class Dashboard:
    """Everything the page talks to.  Construct, then ``run()``."""

    def __init__(self, listen: str, mqtt: str, password: str, settings_path: str,
                 upload_dir: str, max_upload: int = MAX_UPLOAD) -> None:
        if not 0 < max_upload <= UPLOAD_CEILING:
            raise ValueError("max_upload must be 1..%d bytes" % UPLOAD_CEILING)
        self.auth = Auth(password)
        self.settings = SettingsStore(settings_path)
        self.upload_dir = upload_dir
        self.max_upload = max_upload
        os.makedirs(upload_dir, exist_ok=True)
        self.static = prepare_static(os.path.join(HERE, "static"))
        self.requests = 0
        self.rates = Rates()
        self.ws_clients: Dict[cm.Connection, Set[str]] = {}
        self.sse_clients: Set[cm.Connection] = set()
        self.topics: Dict[str, Dict[str, Any]] = {}
        self.last: Dict[str, Any] = {}
        self.mgr = cm.Manager(self.on_http)
        self.broker = cm.MqttBroker(self.mgr, mqtt, sys_interval=5)
        self.listener = self.mgr.listen(listen)
        self.mqtt: Optional[cm.Connection] = None
        self._connect_mqtt()
        self._timer: Optional[cm.Timer] = None
        self._schedule()

    # -- MQTT: the page's own client of the in-process broker ------------------

    def _connect_mqtt(self) -> None:
        self.mqtt = self.mgr.mqtt_connect("mqtt://127.0.0.1:%d" % self.broker.port,
                                          self.on_mqtt, client_id="dashboard-ui")

    def on_mqtt(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_MQTT_OPEN:
            conn.mqtt_sub("#")
        elif ev == cm.MG_EV_MQTT_MSG:
            topic, payload = data.topic, data.data
            entry = self.topics.get(topic)
            if entry is None:
                if len(self.topics) >= MAX_TOPICS:
                    self.topics.pop(next(iter(self.topics)))
                entry = self.topics[topic] = {"count": 0}
            entry["count"] += 1
            text = payload[:256].decode("utf-8", "replace")
            entry["last"] = text
            message = json.dumps({"type": "mqtt", "topic": topic, "payload": text})
            for ws, filters in list(self.ws_clients.items()):
                if any(topic_matches(f, topic) for f in filters):
                    ws.ws_send(message)
        elif ev == cm.MG_EV_CLOSE and conn is self.mqtt:
            self.mqtt = None
            self.mgr.timer_add(1000, self._reconnect_mqtt)

    def _reconnect_mqtt(self) -> None:
        if self.mqtt is None:
            self._connect_mqtt()

    # -- live values --------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.mgr.timer_add(self.settings.current["sample_interval_ms"],
                                         self.tick, repeat=True, run_now=True)

    def snapshot(self) -> Dict[str, Any]:
        stats = self.broker.stats
        rates = self.rates.sample(self.requests, stats.get("messages/received", 0))
        return {"type": "metrics", "cpu": rates["cpu"], "rss": rss_bytes(),
                "connections": len(self.mgr.connections) - 1,  # not the listener
                "rps": rates["rps"], "mps": rates["mps"], "requests": self.requests,
                "clients": sorted(self.broker.clients),
                "topics": [{"topic": t, "count": e["count"], "last": e.get("last", "")}
                           for t, e in sorted(self.topics.items())][:50],
                "device": self.settings.current["device_name"]}

    def tick(self) -> None:
        self.last = snap = self.snapshot()
        text = json.dumps(snap)
        for ws in list(self.ws_clients):
            ws.ws_send(text)
        for conn in list(self.sse_clients):
            conn.send(("data: %s\n\n" % text).encode())
        current = self.settings.current
        if current["telemetry_enabled"] and self.mqtt is not None:
            self.mqtt.mqtt_pub(current["mqtt_topic_prefix"] + "/metrics",
                               json.dumps({"cpu": snap["cpu"], "rss": snap["rss"],
                                           "rps": snap["rps"]}))

    # -- HTTP -------------------------------------------------------------------------

    def _client(self, conn: cm.Connection) -> str:
        addr = conn.remote_addr
        return addr[0] if addr else "?"

    def _authed(self, msg: cm.HttpMessage) -> Optional[str]:
        token = cookie_token(msg.header("Cookie"))
        return token if self.auth.check(token) else None

    def _json(self, conn: cm.Connection, status: int, data: Any,
              extra: Optional[Dict[str, str]] = None) -> None:
        headers = dict(_JSON)
        headers.update(extra or {})
        conn.reply(status, json.dumps(data).encode(), headers)

    def on_http(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_HDRS:
            self.on_head(conn, data)
        elif ev == cm.MG_EV_HTTP_MSG:
            self.requests += 1
            try:
                self.route(conn, data)
            except Exception as exc:  # never a hang: the client gets a 500
                self._json(conn, 500, {"error": "internal error: %s" % type(exc).__name__})
        elif ev == cm.MG_EV_WS_MSG:
            self.on_ws(conn, data)
        elif ev == cm.MG_EV_CLOSE:
            self.ws_clients.pop(conn, None)
            self.sse_clients.discard(conn)

    def on_head(self, conn: cm.Connection, msg: cm.HttpMessage) -> None:
        """Refuse an upload before its body is read: without a session, or
        larger than the limit."""
        if msg.uri != "/api/upload":
            return
        if self._authed(msg) is None:
            self._json(conn, 401, {"error": "log in first"})
            conn.drain()
            return
        length = msg.header("Content-Length")
        if length is None or not length.isdigit():
            self._json(conn, 411, {"error": "Content-Length required"})
            conn.drain()
        elif int(length) > self.max_upload:
            self._json(conn, 413, {"error": "file larger than %d bytes" % self.max_upload})
            conn.drain()

    def route(self, conn: cm.Connection, msg: cm.HttpMessage) -> None:
        uri, method = msg.uri, msg.method
        if uri == "/api/login" and method == "POST":
            return self.login(conn, msg)
        if uri == "/api/session":
            return self._json(conn, 200, {"authenticated": self._authed(msg) is not None})
        if not uri.startswith("/api/") and uri != "/ws":
            if uri == "/":
                return conn.serve_file(msg, os.path.join(self.static, "index.html"),
                                       cache_control="no-cache")
            return conn.serve_dir(msg, self.static, cache_control="no-cache",
                                  dotfiles=False)
        token = self._authed(msg)
        if token is None:
            return self._json(conn, 401, {"error": "log in first"})
        if uri == "/ws":
            if (msg.header("Upgrade") or "").lower() != "websocket":
                return self._json(conn, 400, {"error": "WebSocket upgrade expected"})
            conn.ws_upgrade(msg)
            self.ws_clients[conn] = set()
            if self.last:
                conn.ws_send(json.dumps(self.last))
            return None
        if uri == "/api/logout" and method == "POST":
            self.auth.logout(token)
            return self._json(conn, 200, {"ok": True},
                              {"Set-Cookie": "session=; Path=/; Max-Age=0; HttpOnly; "
                                             "SameSite=Strict"})
        if uri == "/api/settings":
            if method == "GET":
                return self._json(conn, 200, self.settings.current)
            if method == "POST":
                return self.save_settings(conn, msg)
        elif uri == "/api/metrics" and method == "GET":
            return self._json(conn, 200, self.snapshot())
        elif uri == "/api/events" and method == "GET":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Cache-Control: no-cache\r\n\r\n")
            self.sse_clients.add(conn)
            if self.last:
                conn.send(("data: %s\n\n" % json.dumps(self.last)).encode())
            return None
        elif uri == "/api/upload" and method == "POST":
            return self.upload(conn, msg)
        else:
            return self._json(conn, 404, {"error": "no such API: %s %s" % (method, uri)})
        return self._json(conn, 405, {"error": "method not allowed"})

    def login(self, conn: cm.Connection, msg: cm.HttpMessage) -> None:
        client = self._client(conn)
        wait = self.auth.retry_after(client)
        if wait:
            return self._json(conn, 429, {"error": "too many wrong passwords; retry later"},
                              {"Retry-After": str(wait)})
        try:
            password = json.loads(msg.body_bytes or b"{}").get("password")
        except (ValueError, AttributeError):
            password = None
        if not isinstance(password, str):
            return self._json(conn, 400, {"error": "JSON body with a password expected"})
        token = self.auth.login(client, password)
        if token is None:
            return self._json(conn, 401, {"error": "wrong password"})
        return self._json(conn, 200, {"ok": True},
                          {"Set-Cookie": "session=%s; Path=/; HttpOnly; SameSite=Strict"
                                         % token})

    def save_settings(self, conn: cm.Connection, msg: cm.HttpMessage) -> None:
        try:
            data = json.loads(msg.body_bytes)
        except ValueError:
            return self._json(conn, 400, {"error": "the body is not JSON"})
        old_interval = self.settings.current["sample_interval_ms"]
        try:
            saved = self.settings.save(data)
        except SettingsError as exc:
            return self._json(conn, 422, {"error": str(exc)})
        if saved["sample_interval_ms"] != old_interval:
            self._schedule()
        return self._json(conn, 200, saved)

    def upload(self, conn: cm.Connection, msg: cm.HttpMessage) -> None:
        raw_name = msg.header("X-File-Name") or "firmware.bin"
        name = os.path.basename(raw_name.replace("\\", "/")).strip()
        if not name or name.startswith(".") or len(name) > 128 or "\0" in name:
            return self._json(conn, 400, {"error": "bad file name"})
        body = msg.body_bytes
        if len(body) > self.max_upload:
            return self._json(conn, 413, {"error": "file larger than %d bytes" % self.max_upload})
        digest = hashlib.sha256(body).hexdigest()
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=self.upload_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, os.path.join(self.upload_dir, name))
        return self._json(conn, 200, {"name": name, "size": len(body), "sha256": digest})

    # -- WebSocket: publish and subscribe from the page ---------------------------

    def on_ws(self, conn: cm.Connection, wm: cm.WsMessage) -> None:
        filters = self.ws_clients.get(conn)
        if filters is None:
            return
        try:
            request = json.loads(wm.data)
            kind = request["type"]
        except (ValueError, KeyError, TypeError):
            conn.ws_send(json.dumps({"type": "error", "error": "JSON with a type expected"}))
            return
        if kind == "publish":
            topic, payload = request.get("topic"), request.get("payload", "")
            if (not isinstance(topic, str) or not isinstance(payload, str) or not topic
                    or len(topic) > 256 or "+" in topic or "#" in topic or "\0" in topic):
                conn.ws_send(json.dumps({"type": "error", "error": "bad topic or payload"}))
                return
            if self.mqtt is None:
                conn.ws_send(json.dumps({"type": "error", "error": "broker not connected"}))
                return
            self.mqtt.mqtt_pub(topic, payload.encode("utf-8"))
            conn.ws_send(json.dumps({"type": "published", "topic": topic}))
        elif kind == "subscribe":
            pattern = request.get("filter")
            if not isinstance(pattern, str) or len(pattern) > 256 or not valid_filter(pattern):
                conn.ws_send(json.dumps({"type": "error", "error": "bad filter"}))
            elif len(filters) >= MAX_FILTERS:
                conn.ws_send(json.dumps({"type": "error", "error": "too many filters"}))
            else:
                filters.add(pattern)
                conn.ws_send(json.dumps({"type": "subscribed", "filter": pattern}))
        else:
            conn.ws_send(json.dumps({"type": "error", "error": "unknown type"}))

    # -- running --------------------------------------------------------------------

    @property
    def port(self) -> int:
        addr = self.listener.local_addr
        return addr[1] if addr else 0

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then close."""
        stop = []
        previous = [signal.signal(sig, lambda *_: stop.append(True))
                    for sig in (signal.SIGINT, signal.SIGTERM)]
        try:
            while not stop:
                self.mgr.poll(100)
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
            self.close()

    def close(self) -> None:
        self.broker.close()
        self.mgr.close()
        shutil.rmtree(self.static, ignore_errors=True)
