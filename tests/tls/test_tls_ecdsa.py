"""Many TLS 1.3 handshakes with ECDSA P-256 keys against OpenSSL peers (Python ``ssl``).

Mongoose 7.23 wrote the r and s of its CertificateVerify signature as 32-byte
DER INTEGERs whatever their value, so about one signature in 256 carried a
leading zero byte that strict DER parsers (OpenSSL) refuse: the handshake
failed with "bad signature".  vendor/patches/ fixes the encoding; these tests
make enough handshakes (both as server and as client with a certificate) that
the old encoding would almost surely have shown up, and allow no failure.
No handshake is retried.
"""

import socket
import ssl
import threading
import time
from typing import Any, List, Tuple

import pytest

import cymongoose as cm
from support.loop import wait_until
from support.tls import Certs, SslServer, client_context, server_and_client, server_context

# The chance that the old encoding survives N signatures is (1 - 1/256)**N:
# 1200 handshakes leave it under 1%.
SERVER_HANDSHAKES = 1200
CLIENT_HANDSHAKES = 1200
CLIENT_WORKERS = 4
PARALLEL = 8


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Certs:
    return server_and_client(str(tmp_path_factory.mktemp("ecdsa")))


def _handshakes(port: int, ctx: ssl.SSLContext, count: int, failures: List[str]) -> None:
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                # The handshake verifies the server's CertificateVerify signature.
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    got = tls.recv(1)  # sent once the server accepted our Finished
            if got != b"!":
                failures.append("no reply: %r" % got)
        except (OSError, ssl.SSLError) as exc:
            failures.append(repr(exc))


def test_our_server_signs_every_handshake_acceptably(server_factory: Any, certs: Certs) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    server_errors: List[str] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_ACCEPT:
            conn.tls_init(opts)
        elif ev == cm.MG_EV_TLS_HS:
            conn.send(b"!")  # raw, not HTTP: the client only waits for it
            conn.drain()
        elif ev == cm.MG_EV_ERROR:
            server_errors.append(data)

    _, port = server_factory(handler, url="https://127.0.0.1:0")
    ctx = client_context(certs.pki.ca_path)
    failures: List[str] = []
    workers = [threading.Thread(target=_handshakes,
                                args=(port, ctx, SERVER_HANDSHAKES // CLIENT_WORKERS, failures))
               for _ in range(CLIENT_WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not any(w.is_alive() for w in workers)
    assert failures == []
    assert server_errors == []


class Clients:
    """Our TLS clients, PARALLEL at a time, until ``total`` have finished."""

    def __init__(self, mgr: cm.Manager, port: int, opts: cm.TlsOpts, total: int) -> None:
        self.mgr, self.port, self.opts, self.total = mgr, port, opts, total
        self.started = self.finished = 0
        self.ok = 0
        self.errors: List[Tuple[int, str]] = []

    def start(self) -> None:
        while self.started < self.total and self.started - self.finished < PARALLEL:
            self.started += 1
            self.mgr.connect("https://127.0.0.1:%d" % self.port, self)

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(self.opts)
        elif ev == cm.MG_EV_READ:
            # The server's reply: it verified our certificate and signature.
            if conn.recv_data() == b"ok":
                self.ok += 1
                conn.close()
        elif ev == cm.MG_EV_ERROR:
            self.errors.append((conn.id, data))
        elif ev == cm.MG_EV_CLOSE:
            self.finished += 1


def _no_delay(tls: ssl.SSLSocket) -> None:
    # Send the reply at once, without waiting for the ACK of the handshake.
    tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def test_our_client_signs_and_verifies_every_handshake(certs: Certs) -> None:
    ctx = server_context(certs.server, ca=certs.pki.ca_path)
    ctx.num_tickets = 0  # nothing but the reply after the handshake
    server = SslServer(ctx, reply=b"ok", on_conn=_no_delay)
    opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost", cert=certs.client.cert,
                      key=certs.client.key)
    try:
        with cm.Manager() as mgr:
            clients = Clients(mgr, server.port, opts, CLIENT_HANDSHAKES)
            deadline = time.monotonic() + 60
            while clients.finished < CLIENT_HANDSHAKES:
                assert time.monotonic() < deadline, (clients.finished, clients.errors[:3])
                clients.start()
                mgr.poll(10)
        wait_until(lambda: server.served + len(server.errors) >= CLIENT_HANDSHAKES, 10)
    finally:
        server.close()
    assert clients.errors == []
    assert [str(e) for e in server.errors] == []
    assert clients.ok == server.served == CLIENT_HANDSHAKES
