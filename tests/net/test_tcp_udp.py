"""Raw tcp:// and udp:// listeners and clients: MG_EV_READ, recv_data, send, recv_consume."""

import os
import socket
import socketserver
import threading

import pytest

import cymongoose as cm
from support.loop import LoopThread, poll_until
from support.net import UdpPeer

MIB = 1 << 20


@cm.handles(cm.MG_EV_READ)
def echo(conn, ev, data):
    chunk = conn.recv_data()
    conn.recv_consume(len(chunk))
    conn.send(chunk)


@pytest.fixture
def echo_server():
    """Start a cymongoose echo server on ``url``, polled on a thread: returns its port."""
    loops = []

    def start(url):
        mgr = cm.Manager()
        port = mgr.listen(url, echo).local_addr[1]
        loops.append(LoopThread(mgr, poll_ms=5).start())
        return port

    yield start
    for loop in loops:
        loop.stop()
        loop.mgr.close()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


@pytest.fixture
def py_tcp_echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


# -- TCP -----------------------------------------------------------------------


def test_tcp_reads_accumulate_until_consumed():
    reads = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_READ:
            reads.append(conn.recv_data())

    with cm.Manager() as mgr:
        port = mgr.listen("tcp://127.0.0.1:0", handler).local_addr[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"abc")
            poll_until(mgr, lambda: reads and reads[-1] == b"abc")
            client.sendall(b"def")
            # Spec 4.15: without recv_consume each READ sees everything so far.
            poll_until(mgr, lambda: reads[-1] == b"abcdef")
            (server_side,) = [c for c in mgr.connections if not c.is_listening]
            assert server_side.recv_len == 6
            # recv_data(n) copies the first n bytes; a negative n or one past the end: all
            assert server_side.recv_data(2) == b"ab" and server_side.recv_data(0) == b""
            assert server_side.recv_data(-1) == server_side.recv_data(99) == b"abcdef"
            assert server_side.recv_len == 6  # nothing consumed
            assert server_side.recv_consume(2) == 2
            assert server_side.recv_data() == b"cdef"
            client.sendall(b"g")
            poll_until(mgr, lambda: reads[-1] == b"cdefg")
            # send_data shows what is queued and not yet written
            server_side.send(b"queued")
            assert server_side.send_data() == b"queued" and server_side.send_data(3) == b"que"
            client.settimeout(0.001)
            got = bytearray()

            def client_got_all():
                try:
                    got.extend(client.recv(100))
                except socket.timeout:
                    pass
                return got == b"queued"

            poll_until(mgr, client_got_all)
            assert server_side.send_data() == b""


def test_tcp_echo_server_carries_1_mib_intact(echo_server):
    port = echo_server("tcp://127.0.0.1:0")
    payload = os.urandom(MIB)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
        sender.start()
        while len(received) < len(payload):
            chunk = client.recv(65536)
            assert chunk, "server closed early"
            received += chunk
        sender.join(10)
    assert bytes(received) == payload


def test_tcp_client_carries_1_mib_intact(py_tcp_echo):
    payload = os.urandom(MIB)
    received = bytearray()
    events = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_CONNECT:
            events.append(ev)
            conn.send(payload)
        elif ev == cm.MG_EV_READ:
            chunk = conn.recv_data()
            assert conn.recv_consume() == len(chunk)
            received.extend(chunk)
        elif ev == cm.MG_EV_ERROR:
            events.append(data)

    with cm.Manager() as mgr:
        conn = mgr.connect("tcp://127.0.0.1:%d" % py_tcp_echo, handler)
        assert not conn.is_udp and conn.is_client
        poll_until(mgr, lambda: len(received) >= len(payload), timeout=20)
        assert conn.recv_len == 0
    assert events == [cm.MG_EV_CONNECT]
    assert bytes(received) == payload


# -- UDP -----------------------------------------------------------------------


def test_udp_echo_server_answers_1000_datagrams(echo_server):
    port = echo_server("udp://127.0.0.1:0")
    window = 16
    expected = {b"%04d:" % i + os.urandom(1 + i % 200) for i in range(1000)}
    pending = sorted(expected)
    echoed = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.connect(("127.0.0.1", port))
        in_flight = 0
        while pending or in_flight:
            while pending and in_flight < window:
                client.send(pending.pop())
                in_flight += 1
            echoed.add(client.recv(4096))
            in_flight -= 1
    assert echoed == expected


def test_udp_listener_answers_each_sender(echo_server):
    port = echo_server("udp://127.0.0.1:0")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            c.settimeout(5)
            c.sendto(b"from %d" % i, ("127.0.0.1", port))
            assert c.recv(100) == b"from %d" % i
    finally:
        for c in clients:
            c.close()


def test_udp_client_sends_1000_datagrams():
    peer = UdpPeer(lambda d: b"echo:" + d)
    total, window = 1000, 8
    sent = []
    echoes = []

    def send_next(conn):
        data = b"%04d" % len(sent)
        sent.append(data)
        conn.send(data)

    def handler(conn, ev, data):
        if ev == cm.MG_EV_READ:
            echoes.append(conn.recv_data())
            conn.recv_consume()
            if len(sent) < total:
                send_next(conn)

    try:
        with cm.Manager() as mgr:
            conn = mgr.connect(peer.url, handler)
            assert conn.is_udp
            for _ in range(window):
                send_next(conn)
            poll_until(mgr, lambda: len(echoes) == total, timeout=30)
    finally:
        peer.close()
    assert sorted(echoes) == sorted(b"echo:" + s for s in sent)
    assert len(peer.received) == total


# -- recv_consume ------------------------------------------------------------------


def test_recv_consume_arguments_and_states(echo_server):
    with cm.Manager() as mgr:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        assert lsn.recv_consume() == 0
        assert lsn.recv_consume(10) == 0
        for bad in (None, "1", 1.5, True):
            with pytest.raises(TypeError):
                lsn.recv_consume(bad)
        http = mgr.listen("http://127.0.0.1:0")
        with pytest.raises(RuntimeError, match="protocol parser"):
            http.recv_consume()
        lsn.close()
        assert lsn.recv_consume() == 0


def test_many_raw_connections_come_and_go(echo_server):
    port = echo_server("tcp://127.0.0.1:0")
    for i in range(50):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping %d" % i)
            got = b""
            while len(got) < len(b"ping %d" % i):
                got += client.recv(100)
            assert got == b"ping %d" % i
