"""MQTT test helpers: a mosquitto process, our client on a poll thread, paho clients."""

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

import cymongoose as cm
from support.loop import LoopThread, wait_until
from support.sockets import free_port, port_open

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def unique(prefix: str = "cym") -> str:
    """A topic prefix no other test uses."""
    return "%s/%s" % (prefix, uuid.uuid4().hex[:10])


class Mosquitto:
    """A mosquitto broker on a free port, with a config file written here.

    With ``users`` (name -> password) anonymous clients are refused and only
    those users get in (a password file made by ``mosquitto_passwd``).
    """

    def __init__(self, workdir: str, users: Optional[Dict[str, str]] = None,
                 persistence: bool = False) -> None:
        self.workdir = workdir
        self.users = users or {}
        self.persistence = persistence
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def restart(self) -> "Mosquitto":
        """Stop (SIGTERM: with persistence it saves its sessions) and start on the same port."""
        self.stop()
        return self.start(self.port)

    def start(self, port: int = 0) -> "Mosquitto":
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError("mosquitto is not installed (Debian package 'mosquitto'; "
                               "`make system-deps` installs it)")
        for _ in range(3):  # another process may grab the port between probe and bind
            self.port = port or free_port()
            conf = os.path.join(self.workdir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write("listener %d 127.0.0.1\n" % self.port)
                f.write("allow_anonymous %s\n" % ("false" if self.users else "true"))
                if self.users or self.persistence:
                    # run as ourselves: started by root, mosquitto would switch to the
                    # user "mosquitto", who cannot read a password file in our tmp dir
                    f.write("user %s\n" % pwd.getpwuid(os.geteuid()).pw_name)
                if self.users:
                    f.write("password_file %s\n" % self._password_file())
                if self.persistence:
                    f.write("persistence true\npersistence_location %s/\n" % self.workdir)
                    f.write("max_inflight_messages 20\nmax_queued_messages 100000\n")
                else:
                    f.write("persistence false\n")
            log = open(os.path.join(self.workdir, "mosquitto.log"), "a")
            self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log,
                                         stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                if port_open(self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("mosquitto did not start")

    def _password_file(self) -> str:
        path = os.path.join(self.workdir, "passwords")
        open(path, "w").close()
        for name, password in self.users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", path, name, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        return path

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class Msg(NamedTuple):
    topic: str
    data: bytes
    qos: int
    retain: bool
    id: int
    properties: List[Dict[str, Any]]
    text: str
    cmd: int
    ack: int


class Client:
    """Our MQTT client on its own Manager, polled by a background thread.

    The handler copies everything it sees, so the test thread reads plain
    Python values: ``connack`` (and the raw ``connack_packet`` and its
    ``connack_ack`` field), ``messages``,
    ``cmds`` (packet types with ids), ``errors``, and ``closed`` (an Event).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.mgr = cm.Manager()
        self.connack: Optional[int] = None
        self.connack_packet = b""
        self.connack_ack: Optional[int] = None  # MqttMessage.ack of the CONNACK
        self.messages: List[Msg] = []
        self.cmds: List[tuple] = []
        self.errors: List[str] = []
        self.closed = threading.Event()
        self.conn = self.mgr.mqtt_connect(url, self._handler, **kwargs)
        self.loop = LoopThread(self.mgr).start()

    def _handler(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_MQTT_OPEN:
            self.connack = data
        elif ev == cm.MG_EV_MQTT_MSG:
            self.messages.append(Msg(data.topic, data.data, data.qos, data.retain, data.id,
                                     data.properties(), data.text, data.cmd, data.ack))
        elif ev == cm.MG_EV_MQTT_CMD:
            self.cmds.append((data.cmd, data.id))
            if data.cmd == 2:
                self.connack_packet = data.dgram
                self.connack_ack = data.ack
        elif ev == cm.MG_EV_ERROR:
            self.errors.append(data)
        elif ev == cm.MG_EV_CLOSE:
            self.closed.set()

    def wait_open(self, timeout: float = 10.0) -> "Client":
        wait_until(lambda: self.connack is not None, timeout)
        assert self.connack == 0, "CONNACK refused: %r" % self.connack
        return self

    def call(self, fn: Any) -> Any:
        return self.loop.call(fn)

    def has_cmd(self, cmd: int, pid: Optional[int] = None) -> bool:
        return any(c == cmd and (pid is None or i == pid) for c, i in self.cmds)

    def sub(self, topic: str, qos: int = 0, **kw: Any) -> None:
        """Subscribe and wait for the SUBACK."""
        before = sum(1 for c, _ in self.cmds if c == 9)
        self.call(lambda: self.conn.mqtt_sub(topic, qos, **kw))
        wait_until(lambda: sum(1 for c, _ in self.cmds if c == 9) > before)

    def pub(self, topic: str, message: Any, qos: int = 0, retain: bool = False,
            **kw: Any) -> int:
        return self.call(lambda: self.conn.mqtt_pub(topic, message, qos, retain, **kw))

    def topics(self) -> List[str]:
        return [m.topic for m in self.messages]

    def close(self) -> None:
        self.loop.stop()
        self.mgr.close()


class Paho:
    """A paho-mqtt 2.x client with a network thread; records what it receives."""

    def __init__(self, port: int, protocol: int = paho.MQTTv311, client_id: str = "",
                 keepalive: int = 60, will: Optional[Dict[str, Any]] = None,
                 clean_session: Optional[bool] = None, username: Optional[str] = None,
                 password: Optional[str] = None, properties: Any = None) -> None:
        # MQTT 5 says Clean Start, on connect
        v5 = protocol == paho.MQTTv5
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol, clean_session=None if v5 else clean_session)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.messages: List[paho.MQTTMessage] = []
        self.connected = threading.Event()
        self.connack: Any = None  # CONNACK's properties (MQTT 5)
        self.reason: Any = None  # the reason code of the broker's DISCONNECT, if any
        self.disconnected = threading.Event()
        self.acks: set = set()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_ack
        self.c.on_unsubscribe = self._on_ack
        if will:
            self.c.will_set(**will)
        self.c.connect("127.0.0.1", port, keepalive=keepalive, properties=properties,
                       clean_start=(clean_session if v5 and clean_session is not None
                                    else paho.MQTT_CLEAN_START_FIRST_ONLY))
        self.c.loop_start()
        assert self.connected.wait(10), "paho did not connect"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            self.connack = properties
            self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.reason = reason
        self.disconnected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.append(msg)

    def _on_ack(self, client: Any, userdata: Any, mid: int, reasons: Any,
                properties: Any) -> None:
        self.acks.add(mid)

    def sub(self, topic: str, qos: int = 0, options: Any = None) -> None:
        """Subscribe (MQTT 5: with paho's ``SubscribeOptions`` as ``options``)
        and wait for the SUBACK."""
        rc, mid = (self.c.subscribe(topic, qos) if options is None
                   else self.c.subscribe(topic, options=options))
        assert rc == paho.MQTT_ERR_SUCCESS
        wait_until(lambda: mid in self.acks)

    def unsub(self, topic: str) -> None:
        rc, mid = self.c.unsubscribe(topic)
        assert rc == paho.MQTT_ERR_SUCCESS
        wait_until(lambda: mid in self.acks)

    def pub(self, topic: str, payload: Any, qos: int = 0, retain: bool = False,
            properties: Any = None) -> None:
        """Publish and wait until paho considers it sent (PUBACK/PUBCOMP for QoS>0)."""
        info = self.c.publish(topic, payload, qos, retain, properties)
        info.wait_for_publish(10)
        assert info.is_published()

    def payloads(self, topic: Optional[str] = None) -> List[bytes]:
        return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def stop(self) -> None:
        disconnect_and_stop(self.c)


def disconnect_and_stop(client: Any) -> None:
    """``disconnect()`` a paho client, then ``loop_stop()`` its thread.
    paho's ``loop_stop`` reads its thread attribute twice, and the thread,
    which ends by itself after ``disconnect()``, may clear it in between: the
    ``AttributeError`` then says the thread has ended."""
    client.disconnect()
    try:
        client.loop_stop()
    except AttributeError:
        pass


# -- raw MQTT 3.1.1 over a plain socket, for what paho will not send ---------


def packet(first_byte: int, body: bytes) -> bytes:
    """One MQTT packet: fixed header (with the remaining length) and body."""
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes([first_byte]) + bytes(length) + body


def mqtt_string(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client_id: str, keepalive: int = 0, level: int = 4,
                   flags: int = 0x02) -> bytes:
    return packet(0x10, mqtt_string("MQTT") + bytes([level, flags])
                  + keepalive.to_bytes(2, "big") + mqtt_string(client_id))


#: The broker's MQTT 5 CONNACK accepting a new session: its one property says
#: Subscription Identifiers Available 0.
CONNACK5 = b"\x20\x05\x00\x00\x02\x29\x00"


def recv_exact(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError("connection closed after %r" % data)
        data += chunk
    return data


def read_packet(sock: socket.socket, timeout: float = 5.0) -> Tuple[int, bytes]:
    """(first byte, body) of the next packet."""
    head = recv_exact(sock, 2, timeout)
    n, shift, b = 0, 0, head[1]
    while b & 0x80:
        n |= (b & 0x7F) << shift
        shift += 7
        b = recv_exact(sock, 1, timeout)[0]
    n |= (b & 0x7F) << shift
    return head[0], recv_exact(sock, n, timeout)


def read_publish(sock: socket.socket) -> Tuple[int, str, int, bytes]:
    """(flags, topic, packet id, payload) of the next packet, which must be PUBLISH."""
    head = recv_exact(sock, 2)
    assert head[0] >> 4 == 3, head
    n, shift, b = 0, 0, head[1]
    while True:
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        b = recv_exact(sock, 1)[0]
    body = recv_exact(sock, n)
    tlen = int.from_bytes(body[:2], "big")
    topic, rest = body[2:2 + tlen].decode(), body[2 + tlen:]
    pid = 0
    if head[0] & 0x06:
        pid, rest = int.from_bytes(rest[:2], "big"), rest[2:]
    return head[0] & 0x0F, topic, pid, rest


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True once the peer closes (EOF or reset) within ``timeout``; False if it stays open."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        pass
    return True


def raw_client(port: int, client_id: str = "", keepalive: int = 0) -> socket.socket:
    """A plain socket that has sent CONNECT and read an accepting CONNACK."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(connect_packet(client_id, keepalive))
    assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
    return sock


def session_client(port: int, client_id: str, clean: bool = False
                   ) -> Tuple[socket.socket, int]:
    """A plain socket that has connected (a kept session unless ``clean``).

    Returns the socket and CONNACK's session-present flag."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(connect_packet(client_id, flags=0x02 if clean else 0x00))
    ack = recv_exact(sock, 4)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    return sock, ack[2]


def polled_brokers(**defaults: Any) -> Iterator[Callable[..., Tuple[cm.MqttBroker, LoopThread]]]:
    """For a fixture's ``yield from``: start MqttBrokers (``defaults`` + options)
    on port 0, each polled on a thread; returns (broker, loop).  All stop at teardown."""
    running: List[Tuple[cm.Manager, LoopThread]] = []

    def start(**options: Any) -> Tuple[cm.MqttBroker, LoopThread]:
        mgr = cm.Manager()
        b = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", **dict(defaults, **options))
        loop = LoopThread(mgr).start()
        running.append((mgr, loop))
        return b, loop

    yield start
    for mgr, loop in running:
        loop.stop()
        mgr.close()
