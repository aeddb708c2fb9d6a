"""Listening sockets: backlog, SO_REUSEPORT, adopted descriptors, accept bursts."""

import os
import selectors
import socket
import subprocess

import httpx
import pytest

import cymongoose as cm
from support.cli import run_cli
from support.loop import LoopThread, wait_until
from support.sockets import read_until_closed


def hello(conn, ev, hm):
    if ev == cm.MG_EV_HTTP_MSG:
        conn.reply(200, "hello from %d" % id(conn._mgr))


@pytest.fixture
def loops():
    started = []

    def start(mgr):
        started.append(LoopThread(mgr).start())
        return started[-1]

    yield start
    for loop in started:
        loop.stop()
        loop.mgr.close()


def _get(port, path="/"):
    return httpx.get("http://127.0.0.1:%d%s" % (port, path), timeout=10).text


def test_two_managers_share_a_port_with_reuse_port(loops):
    first, second = cm.Manager(hello), cm.Manager(hello)
    port = first.listen("http://127.0.0.1:0", reuse_port=True).local_addr[1]
    second.listen("http://127.0.0.1:%d" % port, reuse_port=True)
    loops(first), loops(second)
    seen = {_get(port) for _ in range(200)}  # the kernel spreads connections over both
    assert seen == {"hello from %d" % id(first), "hello from %d" % id(second)}


def test_without_reuse_port_the_second_listener_fails():
    with cm.Manager() as mgr:
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        with pytest.raises(cm.ListenError):
            mgr.listen("http://127.0.0.1:%d" % port)


def test_an_adopted_listening_socket_is_served(loops):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    mgr = cm.Manager(hello)
    listener = mgr.listen_fd(sock.fileno())
    assert listener.local_addr[1] == port and listener.is_listening
    loop = loops(mgr)
    assert _get(port).startswith("hello from")
    loop.stop()
    mgr.close()
    sock.getsockname()  # the caller's descriptor is its own: still open
    sock.close()


def test_an_adopted_ipv6_socket_is_served(loops):
    sock = socket.socket(socket.AF_INET6)
    try:
        sock.bind(("::1", 0))
    except OSError as exc:
        sock.close()
        pytest.skip("no IPv6 loopback here: %s" % exc)
    sock.listen(16)
    mgr = cm.Manager(hello)
    listener = mgr.listen_fd(sock.fileno())
    assert listener.local_addr[2] is True
    loops(mgr)
    r = httpx.get("http://[::1]:%d/" % sock.getsockname()[1], timeout=10)
    assert r.text.startswith("hello from")
    sock.close()


def test_listen_fd_refuses_what_is_not_a_listening_socket():
    r, w = os.pipe()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unbound = socket.socket()
    try:
        with cm.Manager() as mgr:
            for fd in (r, udp.fileno(), unbound.fileno(), 10 ** 6):
                with pytest.raises(ValueError):
                    mgr.listen_fd(fd)
            with pytest.raises(TypeError):
                mgr.listen_fd("3")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                mgr.listen_fd(True)  # type: ignore[arg-type]
            good = socket.socket()
            good.bind(("127.0.0.1", 0))
            good.listen(1)
            with pytest.raises(ValueError, match="scheme"):
                mgr.listen_fd(good.fileno(), scheme="ftp")
            good.close()
            assert mgr.connections == ()
    finally:
        os.close(r), os.close(w)
        udp.close(), unbound.close()


def test_listen_fd_leaves_the_blocking_flag_of_a_refused_descriptor_alone():
    # The flag belongs to the open file that every process holding the
    # descriptor shares (pre-fork workers): checking it must not change it.
    # (PyPy's socket(fileno=) used to make it blocking.)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    try:
        with cm.Manager() as mgr:
            with pytest.raises(ValueError, match="not a listening TCP socket"):
                mgr.listen_fd(udp.fileno())
        assert not os.get_blocking(udp.fileno())
    finally:
        udp.close()


@pytest.mark.parametrize("backlog, exc", [(0, ValueError), (-1, ValueError), ("5", TypeError),
                                          (1.5, TypeError), (True, TypeError)])
def test_bad_backlog_is_refused(backlog, exc):
    with cm.Manager() as mgr:
        with pytest.raises(exc):
            mgr.listen("http://127.0.0.1:0", backlog=backlog)
        assert mgr.connections == ()


def _listen_queue_len(port):
    """The backlog the kernel reports for a listener (ss's Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True,
                         text=True, timeout=10).stdout.split()
    return int(out[2])


def test_backlog_reaches_the_kernel():
    with cm.Manager() as mgr:
        default = mgr.listen("http://127.0.0.1:0").local_addr[1]
        small = mgr.listen("http://127.0.0.1:0", backlog=7).local_addr[1]
        somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
        assert _listen_queue_len(default) == min(1024, somaxconn)
        assert _listen_queue_len(small) == 7


def test_a_burst_of_connects_is_accepted_and_served_in_full(loops):
    """3,000 clients connect at once to a server with default settings."""
    n = 3000
    accepted = []

    def handler(conn, ev, data):
        if ev == cm.MG_EV_ACCEPT:
            accepted.append(conn.id)
        elif ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    loops(mgr)
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        # a normal request is answered during the burst
        assert _get(port) == "ok"
        wait_until(lambda: len(accepted) >= n + 1, timeout=30)
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answered = sum(read_until_closed(s, 10).endswith(b"ok") for s in socks)
        sel.close()
        assert answered == n
    finally:
        for s in socks:
            s.close()


def test_cli_backlog_must_be_positive():
    res = run_cli("--backlog", "0", "serve", ".")
    assert res.returncode == 2 and "backlog" in res.stderr
