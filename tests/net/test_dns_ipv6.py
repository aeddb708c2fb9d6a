"""Name resolution with IPv6 enabled: names with only A, only AAAA, both or neither.

A real DNS server on 127.0.0.1 answers A and AAAA queries from its records
(NOERROR with no answer for a known name without that type, NXDOMAIN for an
unknown name), and an HTTP client connects by name.  Mongoose 7.23 asks for
AAAA when A fails, but re-asks for AAAA after every failed AAAA answer, without
end; see vendor/patches/ for the fix.
"""

import socket
import struct
import time

import pytest

import cymongoose as cm
from support.loop import poll_until
from support.net import PerConnection, UdpPeer, dns_question

A, AAAA = 1, 28


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")

RECORDS = {
    "v4only.test": {A: "127.0.0.1"},
    "v6only.test": {AAAA: "::1"},
    "both.test": {A: "127.0.0.1", AAAA: "::1"},
    "noaddr.test": {},  # the name exists, with no address of either kind
}


def dns_reply(packet: bytes) -> bytes:
    txid, name, qtype, question = dns_question(packet)
    records = RECORDS.get(name.lower())
    if records is None:
        return struct.pack("!HHHHHH", txid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    addr = records.get(qtype)
    if addr is None:
        return struct.pack("!HHHHHH", txid, 0x8180, 1, 0, 0, 0) + question  # no data
    family = socket.AF_INET if qtype == A else socket.AF_INET6
    rdata = socket.inet_pton(family, addr)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer


@pytest.fixture
def dns():
    server = UdpPeer(dns_reply)
    yield server
    server.close()


class Client(PerConnection):
    """Events of HTTP clients, and the body each one received."""

    def __init__(self):
        super().__init__()
        self.bodies = {}

    def __call__(self, conn, ev, data):
        super().__call__(conn, ev, data)
        if ev == cm.MG_EV_CONNECT:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            self.bodies[conn] = data.body_bytes
            conn.close()

    def closed(self, conn):
        return self.seen(conn, cm.MG_EV_CLOSE)


def serve(conn, ev, data):
    if ev == cm.MG_EV_HTTP_MSG:
        conn.reply(200, "ipv6" if conn.local_addr[2] else "ipv4")


@pytest.fixture
def mgr(dns):
    m = cm.Manager()
    m.dns_server = dns.url
    m.dns_timeout = 1000
    yield m
    m.close()


def queries(dns):
    return [dns_question(p)[1:3] for p in dns.received]


def both_families(mgr):
    """An HTTP server on 127.0.0.1 and, where there is IPv6, on [::1] at the same port."""
    if not _has_ipv6_loopback():
        return mgr.listen("http://127.0.0.1:0", serve).local_addr[1]
    for _ in range(20):
        v4 = mgr.listen("http://127.0.0.1:0", serve)
        port = v4.local_addr[1]
        try:
            mgr.listen("http://[::1]:%d" % port, serve)
            return port
        except RuntimeError:
            v4.close()  # the port is taken on ::1: try another one
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


@pytest.mark.parametrize("name,family,asked", [
    ("v4only.test", "ipv4", [A]),
    ("both.test", "ipv4", [A]),
    pytest.param("v6only.test", "ipv6", [A, AAAA], marks=needs_ipv6),
])
def test_connect_by_name_uses_the_address_that_exists(mgr, dns, name, family, asked):
    port = both_families(mgr)
    client = Client()
    conn = mgr.connect("http://%s:%d" % (name, port), client)
    poll_until(mgr, lambda: client.closed(conn), timeout=5)
    assert client.of(conn, cm.MG_EV_ERROR) == []
    assert client.bodies[conn] == family.encode()
    assert len(client.of(conn, cm.MG_EV_RESOLVE)) == 1
    assert queries(dns) == [(name, t) for t in asked]


@pytest.mark.parametrize("name", ["noaddr.test", "unknown.test"])
def test_a_name_without_addresses_fails_once_and_closes(mgr, dns, name):
    client = Client()
    conn = mgr.connect("http://%s:80" % name, client)
    poll_until(mgr, lambda: client.closed(conn), timeout=5)
    # Failed on the answers, not by the timeout ("DNS timeout").
    assert client.of(conn, cm.MG_EV_ERROR) == ["%s DNS lookup failed" % name]
    assert client.of(conn, cm.MG_EV_RESOLVE) == client.of(conn, cm.MG_EV_CONNECT) == []
    # One A query, then one AAAA query of the same server, and nothing more.
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        mgr.poll(20)
    assert queries(dns) == [(name, A), (name, AAAA)]


def test_many_failing_lookups_at_once_each_end(mgr, dns):
    client = Client()
    conns = [mgr.connect("http://noaddr.test:80", client) for _ in range(20)]
    poll_until(mgr, lambda: all(client.closed(c) for c in conns), timeout=5)
    assert all(client.of(c, cm.MG_EV_ERROR) == ["noaddr.test DNS lookup failed"]
               for c in conns)
    assert sorted(t for _, t in queries(dns)) == [A] * 20 + [AAAA] * 20


def test_aaaa_query_goes_to_the_configured_server_and_times_out(mgr):
    # A server that answers A with "no data" and never answers AAAA.
    def reply(packet):
        if dns_question(packet)[2] == AAAA:
            return None
        return dns_reply(packet)

    silent_on_aaaa = UdpPeer(reply)
    try:
        mgr.dns_server = silent_on_aaaa.url
        mgr.dns_timeout = 200
        client = Client()
        conn = mgr.connect("http://noaddr.test:80", client)
        poll_until(mgr, lambda: client.closed(conn), timeout=5)
        assert client.of(conn, cm.MG_EV_ERROR) == ["DNS timeout"]
        assert queries(silent_on_aaaa) == [("noaddr.test", A), ("noaddr.test", AAAA)]
    finally:
        silent_on_aaaa.close()


@needs_ipv6
def test_a_dns_server_reached_over_ipv6(mgr):
    server = UdpPeer(dns_reply, host="::1")
    try:
        mgr.dns_server = server.url
        port = both_families(mgr)
        client = Client()
        conn = mgr.connect("http://v6only.test:%d" % port, client)
        poll_until(mgr, lambda: client.closed(conn), timeout=5)
        assert client.bodies[conn] == b"ipv6"
        assert queries(server) == [("v6only.test", A), ("v6only.test", AAAA)]
    finally:
        server.close()
