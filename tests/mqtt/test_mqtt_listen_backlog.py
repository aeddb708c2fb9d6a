"""The MQTT listener's accept queue holds a connect storm (Manager.mqtt_listen's backlog)."""

import selectors
import socket
import time

import cymongoose as cm
from support.loop import LoopThread


def _connect_packet(i):
    """MQTT 3.1.1 CONNECT, clean session, client id storm-NNN."""
    client_id = b"storm-%03d" % i
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body

COUNT = 600  # well above Mongoose's own backlog of 128


def _connect_all(port):
    socks = []
    for _ in range(COUNT):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def _handshaken(socks, timeout):
    """Sockets whose TCP handshake completed within ``timeout`` seconds."""
    done, deadline = set(), time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:  # epoll: descriptors above 1024
        for s in socks:
            sel.register(s, selectors.EVENT_WRITE)
        while len(done) < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                done.add(key.fileobj)
                sel.unregister(key.fileobj)
    return done


def test_a_storm_waits_in_the_queue_while_the_broker_is_not_polled():
    with cm.Manager() as mgr:
        broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", sys_interval=0)
        socks = _connect_all(broker.port)
        try:
            # Nobody accepts: only the kernel's queue completes handshakes.
            assert len(_handshaken(socks, 5.0)) == COUNT
        finally:
            for s in socks:
                s.close()


def test_every_client_of_a_storm_gets_its_connack():
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0", sys_interval=0)
    loop = LoopThread(mgr).start()
    socks = _connect_all(broker.port)
    try:
        assert len(_handshaken(socks, 10.0)) == COUNT
        for i, s in enumerate(socks):
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(_connect_packet(i))
        for s in socks:
            assert s.recv(4) == b"\x20\x02\x00\x00"
    finally:
        for s in socks:
            s.close()
        loop.stop()
        broker.close()
        mgr.close()
