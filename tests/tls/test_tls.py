"""TLS on both backends (TlsOpts, tls_init, is_tls); ``builtin_only`` tests
pin the built-in TLS 1.3 stack's own behaviour (test_tls_openssl.py has the
OpenSSL backend's).

Certificates come from a throw-away CA made by the ``pki`` fixture; real
peers are httpx and Python's ``ssl`` module.
"""

import pathlib
import pickle
import socket
import ssl
import time
from typing import Any, Callable, List, Optional, Tuple

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import cymongoose as cm
from cymongoose._ffi import lib
from support.loop import LoopThread, wait_until
from support.sockets import read_until_closed
from support.tls import (BUILTIN, Client, Issued, Pki, SslServer, builtin_only,
                         client_context, server_context)

RESET = ("TLS handshake failed: the peer reset the connection "
         "(socket error; did it refuse our TLS 1.3 ClientHello?)")
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class Ns:
    """Test fixtures' certificates, all made at test time."""

    pki: Pki
    other: Pki
    server: Issued
    server_dns_only: Issued
    client: Issued
    stranger: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Ns:
    d = str(tmp_path_factory.mktemp("pki"))
    ns = Ns()
    ns.pki = Pki(d)
    ns.other = Pki(d, "some other CA")
    ns.server = ns.pki.issue("server", "localhost", dns=["localhost"], ips=["127.0.0.1"])
    # Mongoose accepts any name when an IP SAN equals the connected address,
    # so the host name tests need a certificate without one.
    ns.server_dns_only = ns.pki.issue("server-dns", "localhost", dns=["localhost"])
    ns.client = ns.pki.issue("client", "test client", client=True)
    ns.stranger = ns.other.issue("stranger", "stranger", client=True)
    return ns


def _pem_key(key: Any, fmt: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


class Recorder:
    """An event handler that serves HTTPS and records what happens."""

    def __init__(self, opts: Optional[cm.TlsOpts], body: bytes = b"secure") -> None:
        self.opts = opts
        self.body = body
        self.errors: List[str] = []
        self.tls_seen: List[bool] = []
        self.seq: List[int] = []  # ACCEPT, TLS_HS and HTTP_MSG, in order
        self.closed = 0

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev in (cm.MG_EV_ACCEPT, cm.MG_EV_TLS_HS, cm.MG_EV_HTTP_MSG):
            self.seq.append(ev)
        if ev == cm.MG_EV_ACCEPT and self.opts is not None:
            conn.tls_init(self.opts)
        elif ev == cm.MG_EV_TLS_HS:
            self.tls_seen.append(conn.is_tls)
        elif ev == cm.MG_EV_HTTP_MSG:
            self.tls_seen.append(conn.is_tls)
            conn.reply(200, self.body)
        elif ev == cm.MG_EV_ERROR:
            self.errors.append(data)
        elif ev == cm.MG_EV_CLOSE and not conn.is_listening:
            self.closed += 1


def https_server(server_factory: Callable[..., Any], opts: cm.TlsOpts) -> Tuple[Any, int, Recorder]:
    rec = Recorder(opts)
    loop, port = server_factory(rec, url="https://127.0.0.1:0")
    return loop, port, rec


def ssl_get(port: int, ctx: ssl.SSLContext, host: str = "localhost") -> bytes:
    """One HTTP/1.1 GET over a Python ``ssl`` client; the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return read_until_closed(s, 5)


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """The server turned the client down: an SSL error, or EOF with no reply
    (in TLS 1.3 the client may finish its side before the server refuses)."""
    try:
        return ssl_get(port, ctx) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def https_ok(port: int, certs: Ns) -> None:
    r = httpx.get("https://127.0.0.1:%d/" % port, verify=client_context(certs.pki.ca_path),
                  timeout=5)
    assert (r.status_code, r.text) == (200, "secure")


# -- TlsOpts -----------------------------------------------------------------


def test_backend_is_the_one_built() -> None:
    """``make test-builtin-tls`` sets CYM_TLS=builtin for its build and its tests."""
    import os

    assert cm.TLS_BACKEND == (os.environ.get("CYM_TLS") or "openssl")
    assert cm.TLS_BACKEND in ("openssl", "builtin")


def test_tls_opts_defaults_and_conversion() -> None:
    o = cm.TlsOpts()
    assert (o.ca, o.cert, o.key, o.name, o.skip_verification) == (b"", b"", b"", b"", False)
    o = cm.TlsOpts(None, "", b"", "héllo.example", skip_verification=[1])
    assert (o.ca, o.cert, o.key, o.name, o.skip_verification) == (
        b"", b"", b"", "héllo.example".encode(), True)
    assert cm.TlsOpts(name=0).name == b""
    with pytest.raises(TypeError, match="Expected bytes, got bytearray"):
        cm.TlsOpts(ca=bytearray(b"x"))
    with pytest.raises(TypeError, match="Expected bytes, got int"):
        cm.TlsOpts(key=5)


def test_tls_opts_assignment() -> None:
    o = cm.TlsOpts()
    o.ca = b"-----BEGIN CERTIFICATE-----"
    assert o.ca == b"-----BEGIN CERTIFICATE-----"
    o.name = None
    assert o.name is None
    with pytest.raises(TypeError, match="Expected bytes, got str"):
        o.cert = "text"
    o.skip_verification = "yes"
    assert o.skip_verification is True


def test_tls_opts_reads_paths(certs: Ns, tmp_path: pathlib.Path) -> None:
    o = cm.TlsOpts(ca=certs.pki.ca_path, cert=certs.server.cert_path.encode(),
                   key=pathlib.Path(certs.server.key_path))
    assert (o.ca, o.cert, o.key) == (certs.pki.ca, certs.server.cert, certs.server.key)
    o.ca = pathlib.Path(certs.other.ca_path)
    assert o.ca == certs.other.ca
    o.key = certs.client.key_path.encode()
    assert o.key == certs.client.key
    # A name is never a path, PEM text is never a path.
    assert cm.TlsOpts(name=certs.pki.ca_path).name == certs.pki.ca_path.encode()
    assert cm.TlsOpts(cert=certs.server.cert).cert == certs.server.cert
    with pytest.raises(FileNotFoundError):
        cm.TlsOpts(ca=tmp_path / "missing.pem")
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        cm.TlsOpts(ca=empty)


def test_tls_opts_pickles(certs: Ns) -> None:
    o = cm.TlsOpts(ca=certs.pki.ca, name="localhost", skip_verification=True)
    o.key = None
    p = pickle.loads(pickle.dumps(o))
    assert (p.ca, p.cert, p.key, p.name, p.skip_verification) == (
        certs.pki.ca, b"", None, b"localhost", True)


def test_clock_is_seeded_at_import() -> None:
    """Spec 1.3: certificate dates check against a wall clock set at import."""
    now_ms = time.time() * 1000
    assert abs(lib.mg_boot_timestamp_ms + lib.mg_millis() - now_ms) < 60_000


# -- tls_init argument checks ---------------------------------------------------


def test_tls_init_rejects_non_opts_even_when_closed(certs: Ns) -> None:
    conn = cm.Connection()  # inert and closed: type checks come before the closed check
    with pytest.raises(TypeError, match="TlsOpts"):
        conn.tls_init(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.tls_init(certs.server.cert)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="closed"):
        conn.tls_init(cm.TlsOpts())
    with pytest.raises(RuntimeError, match="closed"):
        conn.tls_free()
    with cm.Manager() as mgr:
        lst = mgr.listen("tcp://127.0.0.1:0")
        with pytest.raises(TypeError):
            lst.tls_init(None)  # type: ignore[arg-type]
        opts = cm.TlsOpts()
        opts.ca = None
        with pytest.raises(TypeError, match="ca is None"):
            lst.tls_init(opts)


def _bad_key_material(certs: Ns) -> List[Tuple[str, Any, str]]:
    key = certs.server.key
    body = key.split(b"\n")
    p384 = ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    enc = certs.server.key_obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    return [
        ("key", key.replace(b"-----END EC PRIVATE KEY-----", b""), "no matching END"),
        ("key", b"\n".join(body[:2] + [b"!!!!" + body[2][4:]] + body[3:]), "base64"),
        ("key", key.replace(b"END EC PRIVATE", b"END RSA PRIVATE"), "different label"),
        ("key", enc, "encrypted"),
        # OpenSSL reads these keys; they do not belong to the certificate
        ("key", _pem_key(p384, serialization.PrivateFormat.TraditionalOpenSSL),
         "P-256" if BUILTIN else "does not match"),
        ("key", _pem_key(p384, serialization.PrivateFormat.PKCS8),
         "P-384" if BUILTIN else "does not match"),
        ("key", _pem_key(ed, serialization.PrivateFormat.PKCS8),
         "Ed25519" if BUILTIN else "does not match"),
        ("key", certs.server.cert, "exactly one"),
        ("key", key.replace(b"EC PRIVATE KEY", b"PRIVATE KEY"), "holds a EC PRIVATE KEY"),
        ("cert", certs.server.key, "no '-----BEGIN CERTIFICATE-----'"),
        ("cert", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         "not an X.509 certificate"),
        ("ca", b"/no/such/ca.pem", "nor the path of an existing file"),
        ("ca", b"\x30\x03\x02\x01\x01", "not an X.509 certificate"),
        ("name", b"local\0host", "NUL"),
    ]


def test_malformed_material_raises_value_error(certs: Ns) -> None:
    """Malformed PEM raises up front: Mongoose would drop some of it silently."""
    with cm.Manager() as mgr:
        conn = mgr.connect("tcp://127.0.0.1:9")
        for field, value, message in _bad_key_material(certs):
            fields = {"cert": certs.server.cert, "key": certs.server.key, field: value}
            with pytest.raises(ValueError, match=message):
                conn.tls_init(cm.TlsOpts(**fields))
        assert not conn.is_closing  # nothing reached Mongoose


@builtin_only
def test_certificate_without_key_is_mg_ev_error(certs: Ns) -> None:
    errors: List[str] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_ERROR:
            errors.append(data)

    with cm.Manager(handler) as mgr:
        conn = mgr.connect("tcp://127.0.0.1:9")
        conn.tls_init(cm.TlsOpts(cert=certs.server.cert))
        assert errors == ["Certificate provided without a private key"]
        assert conn.is_closing
        conn = mgr.connect("tcp://127.0.0.1:9")
        conn.tls_init(cm.TlsOpts(name="a" * 300))
        assert errors[1:] == ["hostname too long"]


def test_second_tls_init_raises_and_tls_free_outside_loop(certs: Ns) -> None:
    with cm.Manager() as mgr:
        conn = mgr.connect("tcp://127.0.0.1:9")
        opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost")
        conn.tls_init(opts)
        assert conn.is_tls
        with pytest.raises(RuntimeError, match="already"):
            conn.tls_init(opts)
        conn.tls_free()
        assert not conn.is_tls
        conn.tls_free()  # no TLS left: a no-op
        conn.tls_init(opts)
        assert conn.is_tls


# -- HTTPS server ----------------------------------------------------------------


def test_https_server_verified_by_httpx(server_factory: Any, certs: Ns) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)
    https_ok(port, certs)
    # Our addition: servers get MG_EV_TLS_HS too, before any request.
    assert rec.seq == [cm.MG_EV_ACCEPT, cm.MG_EV_TLS_HS, cm.MG_EV_HTTP_MSG]
    assert rec.tls_seen == [True, True]
    assert rec.errors == []


def test_tls_init_on_listener_does_not_reach_children(server_factory: Any,
                                                     certs: Ns) -> None:
    """Spec 4.13: on a listener tls_init does nothing for accepted connections;
    those that call tls_init themselves still get the handshake watcher."""
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    rec = Recorder(None)
    loop, port = server_factory(rec, url="http://127.0.0.1:0")
    listener = loop.call(lambda: loop.mgr.connections[0])
    loop.call(lambda: listener.tls_init(opts))
    r = httpx.get("http://127.0.0.1:%d/" % port, timeout=5)
    assert (r.status_code, r.text, rec.tls_seen) == (200, "secure", [False])

    rec.opts = opts  # from now on, children start TLS themselves
    https_ok(port, certs)
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    wait_until(lambda: rec.errors)
    assert rec.errors == ["TLS handshake failed: the peer closed the connection"]
    loop.call(listener.tls_free)  # inside the loop, and still at once on a listener
    assert not listener.is_tls


def _key_variants(certs: Ns, tmp_path: pathlib.Path) -> List[Tuple[str, Callable[[], cm.TlsOpts]]]:
    s = certs.server
    der_key = s.key_obj.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    combined = tmp_path / "combined.pem"
    combined.write_bytes(s.cert + params + s.key)
    return [
        ("sec1", lambda: cm.TlsOpts(cert=s.cert, key=s.key)),
        ("pkcs8", lambda: cm.TlsOpts(cert=s.cert, key=s.key_pkcs8)),
        ("pem-str", lambda: cm.TlsOpts(cert=s.cert.decode(), key=s.key_pkcs8.decode())),
        ("der", lambda: cm.TlsOpts(cert=s.cert_der, key=der_key)),
        ("str-paths", lambda: cm.TlsOpts(cert=s.cert_path, key=s.key_path)),
        ("combined-file", lambda: cm.TlsOpts(cert=combined, key=combined)),
    ]


@pytest.mark.parametrize("variant", ["sec1", "pkcs8", "pem-str", "der", "str-paths",
                                     "combined-file"])
def test_https_server_key_formats(server_factory: Any, certs: Ns, tmp_path: pathlib.Path,
                                  variant: str) -> None:
    opts = dict(_key_variants(certs, tmp_path))[variant]()
    _, port, rec = https_server(server_factory, opts)
    https_ok(port, certs)
    assert rec.errors == []


@builtin_only
@pytest.mark.parametrize("fmt", ["pkcs1", "pkcs8"])
def test_rsa_own_key_is_refused(certs: Ns, fmt: str) -> None:
    """Mongoose 7.23 parses RSA keys but its RSA-CRT signing always fails,
    so every handshake would end in "TLS OOM": refused up front instead."""
    key = rsa.generate_private_key(65537, 2048)
    pem_fmt = (serialization.PrivateFormat.TraditionalOpenSSL if fmt == "pkcs1"
               else serialization.PrivateFormat.PKCS8)
    opts = cm.TlsOpts(cert=certs.server.cert, key=_pem_key(key, pem_fmt))
    with cm.Manager() as mgr:
        conn = mgr.connect("tcp://127.0.0.1:9")
        with pytest.raises(ValueError, match="7.23"):
            conn.tls_init(opts)


def test_https_server_untrusted_by_client(server_factory: Any, certs: Ns) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl_get(port, client_context(certs.other.ca_path))
    https_ok(port, certs)


@builtin_only
def test_client_certificates_required(server_factory: Any, certs: Ns) -> None:
    """``ca`` on a server: a client without a certificate (or with one from
    another CA) is refused, one with a certificate from ``ca`` is served."""
    opts = cm.TlsOpts(ca=certs.pki.ca, cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)

    reply = ssl_get(port, client_context(certs.pki.ca_path, certs.client))
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"secure")
    assert rec.errors == []

    for who in (None, certs.stranger):
        assert refused(port, client_context(certs.pki.ca_path, who))
    wait_until(lambda: len(rec.errors) == 2)
    assert rec.errors[0] == "certificate list too short"  # an empty Certificate message
    assert rec.errors[1].startswith("failed to verify CA")
    assert rec.seq.count(cm.MG_EV_HTTP_MSG) == 1


@builtin_only
def test_tls12_client_fails_cleanly_and_server_keeps_serving(server_factory: Any,
                                                             certs: Ns) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)
    ctx = client_context(certs.pki.ca_path, max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ssl_get(port, ctx)
    wait_until(lambda: rec.errors)
    assert "TLS 1.3" in rec.errors[0]
    https_ok(port, certs)
    assert ssl_get(port, client_context(certs.pki.ca_path)).endswith(b"secure")


@builtin_only
@pytest.mark.parametrize("garbage, message", [
    # plain HTTP on the TLS port
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "the peer does not speak TLS"),
    # a record, but no ClientHello
    (b"\x16\x03\x01\x00\x10" + bytes(range(16)), "did not start a TLS handshake"),
    # a ClientHello of nonsense
    (b"\x16\x03\x01\x00\x30\x01" + b"\xee" * 47, "must offer TLS 1.3"),
    # a record longer than TLS allows
    (b"\x16\x03\x01\xff\xff" + b"x" * 32, "the peer does not speak TLS"),
])
def test_garbage_instead_of_client_hello(server_factory: Any, certs: Ns, garbage: bytes,
                                         message: str) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(garbage)
        try:
            assert s.recv(100) == b""  # the server closes: no reply
        except ConnectionResetError:
            pass
    wait_until(lambda: rec.errors and rec.closed)
    assert len(rec.errors) == 1 and message in rec.errors[0]  # readable, says why
    https_ok(port, certs)


def test_peer_hanging_up_in_handshake_is_reported(server_factory: Any, certs: Ns) -> None:
    """Mongoose closes silently when the peer hangs up mid-handshake; the
    shim reports it."""
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port, rec = https_server(server_factory, opts)
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    wait_until(lambda: rec.closed)
    assert rec.errors == ["TLS handshake failed: the peer closed the connection"]


def test_stalled_handshake_closed_by_header_timeout(certs: Ns) -> None:
    """An HTTPS listener's ``header_timeout`` (docs/hardening.md) also bounds
    the handshake: a peer that sends nothing, or half a ClientHello, is
    closed without an MG_EV_ERROR while others are served."""
    rec = Recorder(cm.TlsOpts(cert=certs.server.cert, key=certs.server.key))
    mgr = cm.Manager()
    lst = mgr.listen("https://127.0.0.1:0", rec, limits=cm.Limits(header_timeout=0.5))
    port = lst.local_addr[1]
    loop = LoopThread(mgr).start()
    socks: List[socket.socket] = []
    try:
        start = time.monotonic()
        for first in (b"", b"\x16\x03\x01\x02\x00\x01\x00"):  # nothing; a cut ClientHello
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            socks[-1].sendall(first)
        https_ok(port, certs)
        for s in socks:
            assert s.recv(1) == b""  # closed by the server
        assert time.monotonic() - start < 4
        wait_until(lambda: rec.closed == 3)
        assert rec.errors == [] and rec.seq.count(cm.MG_EV_HTTP_MSG) == 1
    finally:
        loop.stop()
        mgr.close()
        for s in socks:
            s.close()


def test_closing_our_side_in_handshake_reports_nothing(certs: Ns) -> None:
    """Only the peer's hang-up is an error: our close() or Manager.close() is not."""
    rec = Recorder(cm.TlsOpts(cert=certs.server.cert, key=certs.server.key))
    mgr = cm.Manager(rec)
    port = mgr.listen("https://127.0.0.1:0").local_addr[1]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    deadline = time.monotonic() + 5
    while len(mgr.connections) < 3 and time.monotonic() < deadline:
        mgr.poll(10)
    accepted = [c for c in mgr.connections if not c.is_listening]
    assert len(accepted) == 2 and all(c.is_tls for c in accepted)
    accepted[0].close()  # outside the loop: closes at once
    for _ in range(3):
        mgr.poll(1)
    mgr.close()  # closes the other one mid-handshake
    for s in socks:
        s.close()
    assert rec.closed == 2 and rec.errors == []


def test_close_in_handler_during_handshake_reports_nothing(server_factory: Any,
                                                         certs: Ns) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    errors: List[str] = []
    closed: List[int] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_ACCEPT:
            conn.tls_init(opts)
        elif ev == cm.MG_EV_POLL and conn.is_tls and not conn.is_listening:
            conn.close()  # inside the loop, so deferred; the handshake is running
        elif ev == cm.MG_EV_ERROR:
            errors.append(data)
        elif ev == cm.MG_EV_CLOSE and not conn.is_listening:
            closed.append(conn.id)

    _, port = server_factory(handler, url="https://127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        wait_until(lambda: closed)
    assert errors == []


# -- HTTPS client (our client, a Python ssl server) ---------------------------------


def _read_request(tls: ssl.SSLSocket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return
        data += chunk


@pytest.fixture
def ssl_servers():
    started: List[SslServer] = []

    def start(issued: Issued, **kw: Any) -> SslServer:
        server = SslServer(server_context(issued, **kw), HTTP_OK, on_conn=_read_request)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("ca_form", ["bytes", "str", "path"])
def test_https_client_verifies_server(ssl_servers: Any, certs: Ns, ca_form: str) -> None:
    server = ssl_servers(certs.server_dns_only)
    ca = {"bytes": certs.pki.ca, "str": certs.pki.ca.decode(), "path": certs.pki.ca_path}
    events = Client(cm.TlsOpts(ca=ca[ca_form], name="localhost")).run(server.port)
    assert events == [(cm.MG_EV_TLS_HS, True), (cm.MG_EV_HTTP_MSG, (200, b"hello")),
                      (cm.MG_EV_CLOSE, None)]
    assert server.errors == []


def test_https_client_no_clock_sync_connection(ssl_servers: Any, certs: Ns) -> None:
    """Spec 1.3: with the clock seeded, a CA never opens an SNTP connection."""
    server = ssl_servers(certs.server)
    client = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost"))
    client.run(server.port)
    assert client.conns_at_hs == 1


@pytest.mark.parametrize("ca_attr, name, skip, expect", [
    ("other", "localhost", False, "CA"),
    ("pki", "example.com", False, "hostname"),
    # the built-in stack checks the name even so
    pytest.param("pki", "example.com", True, "hostname", marks=builtin_only),
])
def test_https_client_rejects_server(ssl_servers: Any, certs: Ns, ca_attr: str, name: str,
                                     skip: bool, expect: str) -> None:
    server = ssl_servers(certs.server_dns_only)
    ca = getattr(certs, ca_attr).ca
    events = Client(cm.TlsOpts(ca=ca, name=name, skip_verification=skip)).run(server.port)
    assert [ev for ev, _ in events] == [cm.MG_EV_ERROR, cm.MG_EV_CLOSE]
    assert expect in events[0][1]
    wait_until(lambda: server.errors)  # we hung up on it


@builtin_only
def test_https_client_certificate_to_a_server_requiring_one(ssl_servers: Any,
                                                           certs: Ns) -> None:
    """Our client with a certificate is served; without one it fails with
    MG_EV_ERROR (Mongoose omits the empty Certificate message, docs/tls.md)."""
    server = ssl_servers(certs.server, ca=certs.pki.ca_path)
    opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost", cert=certs.client.cert,
                      key=certs.client.key)
    events = Client(opts).run(server.port)
    assert events[1:] == [(cm.MG_EV_HTTP_MSG, (200, b"hello")), (cm.MG_EV_CLOSE, None)]
    served = server.served
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost")).run(server.port)
    kinds = [ev for ev, _ in events]
    assert cm.MG_EV_HTTP_MSG not in kinds and kinds[-2:] == [cm.MG_EV_ERROR, cm.MG_EV_CLOSE]
    # The server's alert comes with a reset, which may overtake it; our
    # handshake was over by then (TLS 1.3), so it is a plain socket error.
    assert events[-2][1] in ("TLS Fatal alert from peer: unexpected_message (10)",
                             "socket error")
    wait_until(lambda: server.errors)
    assert server.served == served


@builtin_only
def test_ip_san_matching_the_peer_passes_any_name(ssl_servers: Any, certs: Ns) -> None:
    """Measured Mongoose behaviour (docs/tls.md): an IP SAN equal to the
    connected address satisfies the host name check whatever ``name`` is."""
    server = ssl_servers(certs.server)  # SAN: DNS localhost, IP 127.0.0.1
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="example.com")).run(server.port)
    assert events[1] == (cm.MG_EV_HTTP_MSG, (200, b"hello"))


@builtin_only
def test_skip_verification_semantics(ssl_servers: Any, certs: Ns) -> None:
    """Measured Mongoose 7.23 behaviour: ``skip_verification`` skips the
    peer's CertificateVerify check and offers every signature algorithm (so
    a P-384 server key works); it does not skip the CA check when ``ca`` is
    set."""
    p384 = certs.pki.issue("p384-skip", "localhost", dns=["localhost"],
                           key=ec.generate_private_key(ec.SECP384R1()))
    server = ssl_servers(p384)
    events = Client(cm.TlsOpts(name="localhost", skip_verification=True)).run(server.port)
    assert events[1] == (cm.MG_EV_HTTP_MSG, (200, b"hello"))

    server = ssl_servers(certs.server_dns_only)
    opts = cm.TlsOpts(ca=certs.other.ca, name="localhost", skip_verification=True)
    events = Client(opts).run(server.port)
    assert events[0][0] == cm.MG_EV_ERROR and "CA" in events[0][1]


@builtin_only
def test_https_client_against_tls12_server(ssl_servers: Any, certs: Ns) -> None:
    server = ssl_servers(certs.server, max_version=ssl.TLSVersion.TLSv1_2,
                         min_version=ssl.TLSVersion.TLSv1_2)
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost")).run(server.port)
    assert [ev for ev, _ in events] == [cm.MG_EV_ERROR, cm.MG_EV_CLOSE]
    assert events[0][1] in ("TLS error alert from peer: protocol_version (70)", RESET)


def test_https_client_against_plaintext_server(server_factory: Any, certs: Ns) -> None:
    def plaintext(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_READ:
            conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    _, port = server_factory(plaintext, url="tcp://127.0.0.1:0")
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost")).run(port)
    assert [ev for ev, _ in events] == [cm.MG_EV_ERROR, cm.MG_EV_CLOSE]
    assert ("does not speak TLS" if BUILTIN else "wrong version number") in events[0][1]


@builtin_only
def test_failures_close_only_their_own_connection(ssl_servers: Any, certs: Ns) -> None:
    """A failed handshake ends that connection only.  One Manager
    holds our HTTPS server and a keep-alive client of it; clients with the
    wrong CA, the wrong host name or a TLS 1.2 peer, and a peer sending
    garbage to our server, all fail while both ends of the first connection
    go on serving requests."""
    tls12 = ssl_servers(certs.server, max_version=ssl.TLSVersion.TLSv1_2,
                        min_version=ssl.TLSVersion.TLSv1_2)
    rec = Recorder(cm.TlsOpts(cert=certs.server_dns_only.cert, key=certs.server_dns_only.key))
    replies: List[int] = []
    errors: List[Tuple[str, str]] = []
    closed: List[str] = []
    get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def client(label: str, opts: cm.TlsOpts) -> Callable[[cm.Connection, int, Any], None]:
        def handler(conn: cm.Connection, ev: int, data: Any) -> None:
            if ev == cm.MG_EV_CONNECT:
                conn.tls_init(opts)
                conn.send(get)
            elif ev == cm.MG_EV_HTTP_MSG:
                replies.append(data.status())
            elif ev == cm.MG_EV_ERROR:
                errors.append((label, data))
            elif ev == cm.MG_EV_CLOSE:
                closed.append(label)
        return handler

    def poll_until(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, (replies, errors, closed, rec.errors)
            mgr.poll(10)

    mgr = cm.Manager()
    try:
        port = mgr.listen("https://127.0.0.1:0", rec).local_addr[1]
        url = "https://127.0.0.1:%d/" % port
        good = mgr.connect(url, client("good", cm.TlsOpts(ca=certs.pki.ca, name="localhost")))
        poll_until(lambda: replies == [200])
        mgr.connect(url, client("ca", cm.TlsOpts(ca=certs.other.ca, name="localhost")))
        mgr.connect(url, client("name", cm.TlsOpts(ca=certs.pki.ca, name="example.com")))
        mgr.connect("https://127.0.0.1:%d/" % tls12.port,
                    client("tls12", cm.TlsOpts(ca=certs.pki.ca, name="localhost")))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as garbage:
            garbage.sendall(b"\x16\x03\x01\x00\x10" + bytes(range(16)))
            poll_until(lambda: len(closed) == 3 and rec.closed == 3)
        assert sorted(closed) == ["ca", "name", "tls12"]
        failed = dict(errors)
        assert sorted(failed) == ["ca", "name", "tls12"]
        assert "CA" in failed["ca"] and "hostname" in failed["name"]
        assert failed["tls12"] in ("TLS error alert from peer: protocol_version (70)", RESET)
        assert any("client hello" in e for e in rec.errors), rec.errors  # the garbage
        # The first connection, both ends, still works.
        assert not good.is_closing and len(mgr.connections) == 3
        good.send(get)
        poll_until(lambda: replies == [200, 200])
        assert rec.seq.count(cm.MG_EV_HTTP_MSG) == 2 and rec.closed == 3
    finally:
        mgr.close()
    assert mgr.connections == () and mgr.live_handles == 0


def test_https_client_expired_certificate(ssl_servers: Any, certs: Ns) -> None:
    expired = certs.pki.issue("expired", "localhost", dns=["localhost"], days=(-10, -1))
    server = ssl_servers(expired)
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost")).run(server.port)
    expect = ("failed to parse certificate" if BUILTIN else
              "TLS handshake failed: certificate verify failed: certificate has expired")
    assert events == [(cm.MG_EV_ERROR, expect), (cm.MG_EV_CLOSE, None)]


@pytest.mark.parametrize("ca_key, leaf_key", [
    ("p384", "p256"),
    ("rsa", "rsa"),
    ("p256", "rsa"),
])
def test_https_client_verifies_other_chains(ssl_servers: Any, tmp_path: pathlib.Path,
                                            ca_key: str, leaf_key: str) -> None:
    """Peer certificates may use RSA 2048 keys, and chains P-384 or RSA signatures."""
    make = {"p256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
            "rsa": lambda: rsa.generate_private_key(65537, 2048)}
    pki = Pki(str(tmp_path), "CA " + ca_key, key=make[ca_key]())
    server = ssl_servers(pki.issue("leaf", "localhost", dns=["localhost"], key=make[leaf_key]()))
    events = Client(cm.TlsOpts(ca=pki.ca, name="localhost")).run(server.port)
    assert events[:2] == [(cm.MG_EV_TLS_HS, True), (cm.MG_EV_HTTP_MSG, (200, b"hello"))]


@builtin_only
def test_https_client_p384_server_key_fails_readably(ssl_servers: Any, certs: Ns) -> None:
    leaf = certs.pki.issue("p384", "localhost", dns=["localhost"],
                           key=ec.generate_private_key(ec.SECP384R1()))
    server = ssl_servers(leaf)
    events = Client(cm.TlsOpts(ca=certs.pki.ca, name="localhost")).run(server.port)
    # The server's alert comes with a reset, which may overtake it.
    assert events[0][0] == cm.MG_EV_ERROR
    assert events[0][1] in ("TLS error alert from peer: handshake_failure (40)", RESET)


def test_https_url_without_tls_init_runs_plaintext(server_factory: Any) -> None:
    """Spec 11.11: the scheme only pre-sets is_tls; without tls_init the
    connection is cleared to plain text at CONNECT."""
    rec = Recorder(None)
    _, port = server_factory(rec, url="http://127.0.0.1:0")
    seen: List[Any] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_OPEN:
            seen.append(("open", conn.is_tls))
        elif ev == cm.MG_EV_CONNECT:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            seen.append(("msg", conn.is_tls, data.body_bytes))
            conn.close()

    with cm.Manager(handler) as mgr:  # OPEN reaches the default handler only
        mgr.connect("https://127.0.0.1:%d/" % port)
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            mgr.poll(10)
    assert seen == [("open", True), ("msg", False, b"secure")]


def test_tls_free_inside_handshake_event_is_deferred(ssl_servers: Any, certs: Ns) -> None:
    """tls_free() in MG_EV_TLS_HS would free state Mongoose still uses; it
    waits for the next poll, and tls_init meanwhile raises."""
    server = ssl_servers(certs.server)
    seen: List[Any] = []
    opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost")

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(opts)
        elif ev == cm.MG_EV_TLS_HS:
            conn.tls_free()
            seen.append(conn.is_tls)
            try:
                conn.tls_init(opts)
            except RuntimeError as exc:
                seen.append(str(exc))

    with cm.Manager(handler) as mgr:
        conn = mgr.connect("tcp://127.0.0.1:%d" % server.port)
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            mgr.poll(10)
        mgr.poll(1)
        assert seen[0] is True and "next poll" in seen[1]
        assert not conn.is_tls and conn.id


# -- leaks ----------------------------------------------------------------------


def test_200_sequential_https_handshakes_leave_nothing(certs: Ns) -> None:
    """Our client and our server in one Manager: 200 GETs, one at a time."""
    server_opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    client_opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost")
    done: List[int] = []
    errors: List[str] = []

    def client(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(client_opts)
            conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            done.append(data.status())
            conn.close()
        elif ev == cm.MG_EV_ERROR:
            errors.append(data)

    rec = Recorder(server_opts)
    mgr = cm.Manager()
    try:
        port = mgr.listen("https://127.0.0.1:0", rec).local_addr[1]
        deadline = time.monotonic() + 60
        for i in range(200):
            mgr.connect("https://127.0.0.1:%d/" % port, client)
            while len(done) <= i and not errors:
                assert time.monotonic() < deadline
                mgr.poll(5)
        while len(mgr.connections) > 1:
            assert time.monotonic() < deadline
            mgr.poll(5)
        assert errors == [] and rec.errors == []
        assert done == [200] * 200 and rec.closed == 200
        assert [c.is_listening for c in mgr.connections] == [True]
        assert mgr.live_handles == 1
    finally:
        mgr.close()
    assert mgr.connections == () and mgr.live_handles == 0
