"""TCP/UDP echo, timers, wakeup, asyncio and HTTPS examples, run as subprocesses."""

import os
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support.subprocs import EXAMPLES, run_example
from support.tls import Pki

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="needs the source tree's examples/")

LISTEN = ("--listen", "http://127.0.0.1:0")


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed after %d bytes" % len(data)
        data += chunk
    return data


def test_tcp_echo(start_example):
    proc, port = start_example("tcp_echo.py", "--listen", "tcp://127.0.0.1:0")
    payload = os.urandom(1 << 20)
    a = socket.create_connection(("127.0.0.1", port), timeout=10)
    b = socket.create_connection(("127.0.0.1", port), timeout=10)
    with a, b:
        b.sendall(b"second client")
        a.sendall(payload)
        assert recv_exactly(b, 13) == b"second client"
        assert recv_exactly(a, len(payload)) == payload
        local = "%s:%d" % a.getsockname()
        proc.wait_for("connected: " + local)
    proc.wait_for("closed: " + local)


def test_udp_echo(start_example):
    _, port = start_example("udp_echo.py", "--listen", "udp://127.0.0.1:0")
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for i, s in enumerate(senders):
            s.settimeout(10)
            s.sendto(b"datagram %d" % i, ("127.0.0.1", port))
        for i, s in enumerate(senders):  # each answer goes to its own sender
            assert s.recvfrom(100) == (b"datagram %d" % i, ("127.0.0.1", port))
    finally:
        for s in senders:
            s.close()


def test_timers(start_example):
    proc, port = start_example("timers.py", "--interval-ms", "30", "--ticks", "4", *LISTEN)
    proc.wait_for("stopped ticking after 4 ticks")
    assert httpx.get("http://127.0.0.1:%d/" % port).json() == {"ticks": 4, "ticking": False}
    lines = proc.output.splitlines()
    assert lines[1] == "started"  # run_now: on the first poll, before any tick
    assert [x for x in lines if x.startswith("tick")] == ["tick %d" % i for i in range(1, 5)]
    assert lines.count("one-shot fired") == 1


def test_wakeup_threads(start_example):
    _, port = start_example("wakeup_threads.py", "--workers", "4", *LISTEN)
    url = "http://127.0.0.1:%d/square" % port
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: client.get(url, params={"n": n}).text, range(16)))
    assert answers == ["%d\n" % (n * n) for n in range(16)]


def test_asyncio_server(start_example):
    _, port = start_example("asyncio_server.py", *LISTEN)
    base = "http://127.0.0.1:%d" % port
    assert httpx.get(base + "/a").json() == {"hits": 1, "path": "/a"}
    assert httpx.get(base + "/b").json() == {"hits": 2, "path": "/b"}


def test_https_server(start_example, tmp_path):
    pki = Pki(str(tmp_path))
    server = pki.issue("server", "localhost", dns=["localhost"], ips=["127.0.0.1"])
    _, port = start_example("https_server.py", "--cert", server.cert_path, "--key",
                            server.key_path, "--listen", "https://127.0.0.1:0")
    ctx = ssl.create_default_context(cafile=pki.ca_path)
    r = httpx.get("https://127.0.0.1:%d/" % port, verify=ctx)
    assert r.text == "Hello over TLS 1.3\n" and r.http_version == "HTTP/1.1"
    # A client that does not trust the test CA refuses the certificate.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get("https://127.0.0.1:%d/" % port, verify=ssl.create_default_context())


def test_http_client_over_https(start_example, tmp_path):
    pki = Pki(str(tmp_path))
    server = pki.issue("server", "localhost", ips=["127.0.0.1"])
    _, port = start_example("https_server.py", "--cert", server.cert_path, "--key",
                            server.key_path, "--listen", "https://127.0.0.1:0")
    url = "https://127.0.0.1:%d/" % port
    out = run_example("http_client.py", "--url", url, "--ca", pki.ca_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP 200") and out.stdout.endswith("Hello over TLS 1.3\n")
    # Another CA's certificate does not verify: no response, an error.
    other = Pki(str(tmp_path), cn="another CA")
    out = run_example("http_client.py", "--url", url, "--ca", other.ca_path, "--timeout", "5")
    assert out.returncode == 1 and out.stderr.startswith("error:")
    # Without a CA the example refuses to connect unverified.
    out = run_example("http_client.py", "--url", url)
    assert out.returncode == 2 and "needs --ca" in out.stderr
