"""Idle connections give their empty receive and send buffers back
(_csrc/conn_iobufs.c): after a request or an MQTT CONNECT the connection
holds 16 KiB each way, and once it had no I/O for a second or two both are
freed.  Traffic afterwards allocates again, messages larger than one
16 KiB step included."""

import hashlib

import cymongoose as cm
from support.loop import LoopThread, wait_until
from support.mqtt import Paho
from support.sockets import connect, read_until

BIG = 40_000  # more than two of Mongoose's 16 KiB buffer steps


def _sizes(loop, mgr):
    """(recv_size, send_size) of every non-listening connection, read on the poll thread."""
    return loop.call(lambda: [(c.recv_size, c.send_size) for c in mgr.connections
                              if not c.is_listening])


def _all_released(loop, mgr, count):
    sizes = _sizes(loop, mgr)
    return len(sizes) == count and all(s == (0, 0) for s in sizes)


def _echo(conn, ev, data):
    if ev == cm.MG_EV_HTTP_MSG:
        conn.reply(200, data.body_bytes)


def _request(sock, body: bytes) -> bytes:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    want = b"Content-Length: %d\r\n\r\n" % len(body)
    got = read_until(sock, lambda b: want in b and b.endswith(body))
    assert got.startswith(b"HTTP/1.1 200 ")
    return got


def test_idle_keep_alive_connections_release_buffers_and_serve_again():
    mgr = cm.Manager(_echo)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loop = LoopThread(mgr).start()
    socks = [connect(port) for _ in range(8)]
    try:
        for i, sock in enumerate(socks):
            _request(sock, b"hello %d" % i)
        assert any(s != (0, 0) for s in _sizes(loop, mgr))  # held right after a request
        wait_until(lambda: _all_released(loop, mgr, len(socks)))
        big = hashlib.sha256(b"x").digest() * (BIG // 32)
        for sock in socks:
            _request(sock, big)
        assert all(r >= len(big) for r, _ in _sizes(loop, mgr))
        wait_until(lambda: _all_released(loop, mgr, len(socks)))
        _request(socks[0], b"again")
    finally:
        for sock in socks:
            sock.close()
        loop.stop()
        mgr.close()


def test_idle_mqtt_clients_release_buffers_and_large_publish_arrives():
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtt://127.0.0.1:0")
    loop = LoopThread(mgr).start()
    clients = []
    try:
        clients = [Paho(broker.port, client_id="idle-%d" % i) for i in range(5)]
        clients[0].sub("big/#", 1)
        wait_until(lambda: _all_released(loop, mgr, len(clients)))
        payload = hashlib.sha256(b"y").digest() * (BIG // 32)
        clients[1].pub("big/one", payload, 1)
        wait_until(lambda: clients[0].payloads("big/one"))
        assert clients[0].payloads("big/one") == [payload]
        wait_until(lambda: _all_released(loop, mgr, len(clients)))
    finally:
        for c in clients:
            c.stop()
        loop.stop()
        mgr.close()
