"""DNS resolution through a test DNS server, and SNTP time from a test responder."""

import time

import pytest

import cymongoose as cm
from cymongoose._ffi import lib
from support.loop import poll_until
from support.net import PerConnection, UdpPeer, dns_question, dns_server, sntp_server

TEST_NAME = "cymongoose.test"


@pytest.fixture
def rec():
    return PerConnection()


@pytest.fixture
def mgr(rec):
    m = cm.Manager(rec)
    yield m
    m.close()


@pytest.fixture
def dns():
    server = dns_server({TEST_NAME: "127.0.0.1", "other.test": "127.0.0.1"})
    yield server
    server.close()


@pytest.fixture
def silent_dns():
    server = UdpPeer(lambda packet: None)
    yield server
    server.close()


def queried_names(server):
    return [dns_question(p)[1:3] for p in server.received]


# -- DNS ---------------------------------------------------------------------


def test_dns_settings(mgr):
    assert mgr.dns_server == "udp://8.8.8.8:53"
    assert mgr.dns_timeout == 3000
    mgr.dns_server = "udp://127.0.0.1:53"
    mgr.dns_timeout = 250
    assert (mgr.dns_server, mgr.dns_timeout) == ("udp://127.0.0.1:53", 250)
    with pytest.raises(TypeError):
        mgr.dns_server = b"udp://127.0.0.1:53"
    with pytest.raises(ValueError):
        mgr.dns_server = ""
    with pytest.raises(OverflowError):
        mgr.dns_timeout = -1
    with pytest.raises(TypeError):
        mgr.dns_timeout = None
    mgr.close()
    with pytest.raises(RuntimeError):
        mgr.dns_server
    with pytest.raises(RuntimeError):
        mgr.dns_server = "udp://127.0.0.1:53"
    with pytest.raises(RuntimeError):
        mgr.dns_timeout = 5


def test_connect_resolves_a_name_through_the_dns_server(mgr, rec, dns):
    mgr.dns_server = dns.url
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    conn = mgr.connect("tcp://%s:%d" % (TEST_NAME, port))
    poll_until(mgr, lambda: rec.seen(conn, cm.MG_EV_CONNECT))
    evs = [e for e, _ in rec.events_of(conn)]
    assert evs.index(cm.MG_EV_RESOLVE) < evs.index(cm.MG_EV_CONNECT)
    assert cm.MG_EV_ERROR not in evs
    assert conn.remote_addr == ("127.0.0.1", port, False)
    assert queried_names(dns) == [(TEST_NAME, 1)]


def test_localhost_and_ip_literals_need_no_query(mgr, rec, dns):
    mgr.dns_server = dns.url
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    by_name = mgr.connect("tcp://localhost:%d" % port)
    literal = mgr.connect("tcp://127.0.0.1:%d" % port)
    # An IP literal resolves inside connect(), before it returns.
    assert rec.seen(literal, cm.MG_EV_RESOLVE)
    poll_until(mgr, lambda: rec.seen(by_name, cm.MG_EV_CONNECT) and rec.seen(literal, cm.MG_EV_CONNECT))
    assert by_name.remote_addr == literal.remote_addr == ("127.0.0.1", port, False)
    assert dns.received == []


def test_resolve_repoints_a_udp_client(mgr, rec, dns):
    mgr.dns_server = dns.url
    first = UdpPeer(lambda d: b"first:" + d)
    second = UdpPeer(lambda d: b"second:" + d)
    try:
        conn = mgr.connect(first.url)
        conn.send(b"a")
        poll_until(mgr, lambda: conn.recv_data() == b"first:a")
        conn.recv_consume()

        # An IP literal resolves synchronously, inside resolve().
        before = len(rec.of(conn, cm.MG_EV_RESOLVE))
        conn.resolve(second.url)
        assert len(rec.of(conn, cm.MG_EV_RESOLVE)) == before + 1
        assert conn.remote_addr == ("127.0.0.1", second.port, False)
        conn.send(b"b")
        poll_until(mgr, lambda: conn.recv_data() == b"second:b")
        conn.recv_consume()

        # A name goes through the DNS server; RESOLVE comes during a later poll.
        conn.resolve("udp://%s:%d" % (TEST_NAME, first.port))
        poll_until(mgr, lambda: len(rec.of(conn, cm.MG_EV_RESOLVE)) == before + 2)
        conn.send(b"c")
        poll_until(mgr, lambda: conn.recv_data() == b"first:c")
        assert queried_names(dns) == [(TEST_NAME, 1)]
        assert first.received == [b"a", b"c"] and second.received == [b"b"]
    finally:
        first.close()
        second.close()


def test_resolve_reconnects_a_tcp_client_without_leaking_its_socket(mgr, rec, dns):
    mgr.dns_server = dns.url
    accepted = PerConnection()
    lsn1 = mgr.listen("tcp://127.0.0.1:0", accepted)
    lsn2 = mgr.listen("tcp://127.0.0.1:0", accepted)
    port2 = lsn2.local_addr[1]
    conn = mgr.connect("tcp://127.0.0.1:%d" % lsn1.local_addr[1])
    poll_until(mgr, lambda: rec.seen(conn, cm.MG_EV_CONNECT)
               and len([e for _, e, _ in accepted.events if e == cm.MG_EV_ACCEPT]) == 1)
    peer1 = [c for c, e, _ in accepted.events if e == cm.MG_EV_ACCEPT][0]
    conn.resolve("tcp://%s:%d" % (TEST_NAME, port2))
    # The first socket is closed, so its peer sees the close.
    poll_until(mgr, lambda: accepted.seen(peer1, cm.MG_EV_CLOSE)
               and len(rec.of(conn, cm.MG_EV_CONNECT)) == 2)
    assert conn.remote_addr == ("127.0.0.1", port2, False)
    conn.send(b"over the second socket")
    peer2 = [c for c, e, _ in accepted.events if e == cm.MG_EV_ACCEPT][1]
    poll_until(mgr, lambda: peer2.recv_data() == b"over the second socket")


def test_resolve_timeout_reports_an_error(mgr, rec, silent_dns):
    mgr.dns_server = silent_dns.url
    mgr.dns_timeout = 200
    conn = mgr.connect("tcp://%s:80" % TEST_NAME)
    poll_until(mgr, lambda: rec.seen(conn, cm.MG_EV_CLOSE))
    errors = [d for e, d in rec.events_of(conn) if e == cm.MG_EV_ERROR]
    assert errors and errors[0] == "DNS timeout"
    assert not rec.seen(conn, cm.MG_EV_RESOLVE)
    assert queried_names(silent_dns) == [(TEST_NAME, 1)]


def test_resolve_cancel_drops_the_lookup(mgr, rec, silent_dns):
    mgr.dns_server = silent_dns.url
    mgr.dns_timeout = 100
    conn = mgr.connect("tcp://%s:80" % TEST_NAME)
    poll_until(mgr, lambda: silent_dns.received)
    conn.resolve_cancel()
    deadline = time.monotonic() + 0.5  # well past the timeout
    while time.monotonic() < deadline:
        mgr.poll(20)
    assert not rec.seen(conn, cm.MG_EV_ERROR)
    assert conn.id != 0
    conn.close()
    assert rec.seen(conn, cm.MG_EV_CLOSE)


def test_changing_the_dns_server_takes_effect(mgr, rec, dns, silent_dns):
    mgr.dns_server = silent_dns.url
    mgr.dns_timeout = 100
    first = mgr.connect("tcp://%s:80" % TEST_NAME)
    poll_until(mgr, lambda: rec.seen(first, cm.MG_EV_CLOSE))
    mgr.dns_server = dns.url
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    second = mgr.connect("tcp://other.test:%d" % port)
    poll_until(mgr, lambda: rec.seen(second, cm.MG_EV_CONNECT))
    assert queried_names(dns) == [("other.test", 1)]


def test_resolve_argument_and_state_checks(mgr, rec):
    lsn = mgr.listen("tcp://127.0.0.1:0")
    with pytest.raises(RuntimeError, match="listener"):
        lsn.resolve("tcp://127.0.0.1:1")
    conn = mgr.connect("udp://127.0.0.1:9")
    with pytest.raises(TypeError):
        conn.resolve(b"udp://127.0.0.1:9")
    conn.close()
    with pytest.raises(TypeError):
        conn.resolve(None)  # argument checks come first
    for call in (lambda: conn.resolve("udp://127.0.0.1:9"), conn.resolve_cancel,
                 conn.sntp_request):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_resolve_inside_connect_open_is_refused():
    outcome = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_OPEN and conn.is_client:
            try:
                conn.resolve("tcp://127.0.0.1:9")
            except RuntimeError as exc:
                outcome.append(str(exc))

    with cm.Manager(handler) as mgr:
        mgr.connect("tcp://127.0.0.1:9")
        mgr.poll(0)
    assert len(outcome) == 1 and "MG_EV_OPEN" in outcome[0]


# -- SNTP --------------------------------------------------------------------


@pytest.fixture
def keep_clock():
    """SNTP replies reset Mongoose's wall clock: put it back afterwards."""
    saved = lib.mg_boot_timestamp_ms
    yield
    lib.mg_boot_timestamp_ms = saved


def test_sntp_time_is_delivered(mgr, rec, keep_clock):
    server_ms = int(time.time() * 1000) + 86_400_000  # a clock one day ahead
    server = sntp_server(server_ms)
    try:
        conn = mgr.sntp_connect(server.url)
        poll_until(mgr, lambda: rec.seen(conn, cm.MG_EV_CLOSE))
    finally:
        server.close()
    evs = [e for e, _ in rec.events_of(conn) if e not in (cm.MG_EV_READ, cm.MG_EV_WRITE)]
    assert evs == [cm.MG_EV_OPEN, cm.MG_EV_RESOLVE, cm.MG_EV_CONNECT, cm.MG_EV_SNTP_TIME,
                   cm.MG_EV_CLOSE]
    (got,) = [d for e, d in rec.events_of(conn) if e == cm.MG_EV_SNTP_TIME]
    assert isinstance(got, int)
    assert abs(got - server_ms) < 1000
    assert len(server.received) == 1 and len(server.received[0]) == 48
    # Mongoose's clock now follows the server's.
    assert abs(lib.mg_millis() + lib.mg_boot_timestamp_ms - server_ms) < 2000


def test_sntp_request_sends_another_request(keep_clock):
    server_ms = int(time.time() * 1000) - 3_600_000
    server = sntp_server(server_ms, answer_from=2)  # ignores the automatic request
    times = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_SNTP_TIME:
            times.append(data)

    try:
        with cm.Manager() as mgr:
            # With an IP literal the automatic request left inside sntp_connect().
            conn = mgr.sntp_connect(server.url, handler)
            conn.sntp_request()
            poll_until(mgr, lambda: times)
    finally:
        server.close()
    assert len(server.received) == 2
    assert abs(times[0] - server_ms) < 1000


def test_sntp_without_a_reply_closes(mgr, rec, silent_dns):
    # The "server" never answers: Mongoose gives up after 3 s.
    conn = mgr.sntp_connect(silent_dns.url)
    poll_until(mgr, lambda: rec.seen(conn, cm.MG_EV_CLOSE), timeout=10)
    assert not rec.seen(conn, cm.MG_EV_SNTP_TIME)
