"""Certificates made at test time (never committed) and a Python ``ssl`` server.

Keys are EC P-256 (the only kind Mongoose's built-in TLS signs with, so
every backend can use them) unless a test asks for another kind.
"""

import datetime
import ipaddress
import os
import re
import socket
import ssl
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import cymongoose as cm

_ONE_DAY = datetime.timedelta(days=1)

#: True in a build with Mongoose's built-in TLS stack (CYM_TLS=builtin).
BUILTIN = cm.TLS_BACKEND == "builtin"
#: Behaviour of the built-in stack only (TLS 1.3 only, P-256 own keys, its
#: own error texts); ``make test`` runs these against a CYM_TLS=builtin build.
builtin_only = pytest.mark.skipif(not BUILTIN, reason="built-in TLS stack only "
                                  "(make test-builtin-tls runs it)")
#: Behaviour of the OpenSSL backend only.
openssl_only = pytest.mark.skipif(BUILTIN, reason="OpenSSL backend only")


def _key_pem(key: Any, fmt: Any = serialization.PrivateFormat.TraditionalOpenSSL) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


class Issued:
    """A certificate and its key, as PEM bytes, plus files holding them."""

    def __init__(self, cert: Any, key: Any, directory: str, stem: str) -> None:
        self.cert_obj = cert
        self.key_obj = key
        self.cert = cert.public_bytes(serialization.Encoding.PEM)
        self.key = _key_pem(key)  # SEC 1 "EC PRIVATE KEY"
        self.key_pkcs8 = _key_pem(key, serialization.PrivateFormat.PKCS8)
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = os.path.join(directory, stem + ".crt")
        self.key_path = os.path.join(directory, stem + ".key")
        with open(self.cert_path, "wb") as f:
            f.write(self.cert)
        with open(self.key_path, "wb") as f:
            f.write(self.key)


class Pki:
    """A throw-away CA that issues server and client certificates."""

    def __init__(self, directory: str, cn: str = "cymongoose test CA",
                 key: Any = None, issuer: "Optional[Pki]" = None) -> None:
        self.directory = directory
        self.issuer = issuer
        now = datetime.datetime.now(datetime.timezone.utc)
        self.key_obj = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        self.hash = hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and \
            key.curve.key_size > 256 else hashes.SHA256()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        signer = issuer if issuer is not None else self
        self.cert_obj = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.cert_obj.subject if issuer is not None else name)
            .public_key(self.key_obj.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY).not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(signer.key_obj, signer.hash)
        )
        self.ca = self.cert_obj.public_bytes(serialization.Encoding.PEM)
        self.ca_path = os.path.join(directory, "ca-%s.crt" % re.sub(r"\W+", "-", cn))
        with open(self.ca_path, "wb") as f:
            f.write(self.ca)

    def issue(self, stem: str, cn: str, dns: Sequence[str] = (), ips: Sequence[str] = (),
              client: bool = False, key: Any = None,
              days: Tuple[int, int] = (-1, 30)) -> Issued:
        """A leaf certificate for ``cn`` with the given SANs, valid over ``days`` from now."""
        now = datetime.datetime.now(datetime.timezone.utc)
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
        sans: List[Any] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert_obj.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + days[0] * _ONE_DAY).not_valid_after(now + days[1] * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        issued = Issued(builder.sign(self.key_obj, self.hash), key, self.directory, stem)
        if self.issuer is not None:  # the leaf's file carries the chain up to the root
            issued.cert += self.ca
            with open(issued.cert_path, "wb") as f:
                f.write(issued.cert)
        return issued


class Certs:
    """A CA with a server certificate (localhost, 127.0.0.1) and a client one."""

    pki: Pki
    server: Issued
    client: Issued


def server_and_client(directory: str) -> Certs:
    """The usual test PKI, made in ``directory``."""
    certs = Certs()
    certs.pki = Pki(directory)
    certs.server = certs.pki.issue("server", "localhost", dns=["localhost"], ips=["127.0.0.1"])
    certs.client = certs.pki.issue("client", "test client", client=True)
    return certs


class SslServer:
    """A Python ``ssl`` TCP server on a thread: answers each connection with ``reply``.

    ``errors`` collects the handshake failures the server saw.
    """

    def __init__(self, context: ssl.SSLContext, reply: bytes = b"hello over tls",
                 on_conn: Optional[Callable[[ssl.SSLSocket], None]] = None) -> None:
        self.context = context
        self.reply = reply
        self.on_conn = on_conn
        self.errors: List[BaseException] = []
        self.served = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    if self.on_conn is not None:
                        self.on_conn(tls)
                    tls.sendall(self.reply)
                    self.served += 1
                    try:
                        tls.unwrap()
                    except (OSError, ssl.SSLError):
                        pass
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(exc)
                raw.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.sock.close()


def server_context(issued: Issued, ca: Optional[str] = None,
                   max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                   min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    """A Python ``ssl`` server context; ``ca`` (a path) requires client certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = min_version
    ctx.maximum_version = max_version
    ctx.load_cert_chain(issued.cert_path, issued.key_path)
    if ca is not None:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_path: str, issued: Optional[Issued] = None,
                   max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    """A Python ``ssl`` client context verifying with ``ca_path``."""
    ctx = ssl.create_default_context(cafile=ca_path)
    ctx.maximum_version = max_version
    if issued is not None:
        ctx.load_cert_chain(issued.cert_path, issued.key_path)
    return ctx


class Client:
    """Our HTTPS client: tls_init in MG_EV_CONNECT, one GET, events recorded."""

    def __init__(self, opts: cm.TlsOpts) -> None:
        self.opts = opts
        self.events: List[Tuple[int, Any]] = []
        self.conns_at_hs = 0

    def __call__(self, conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(self.opts)
            conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        elif ev == cm.MG_EV_TLS_HS:
            self.conns_at_hs = len(conn._mgr.connections)
            self.events.append((ev, conn.is_tls))
        elif ev == cm.MG_EV_HTTP_MSG:
            self.events.append((ev, (data.status(), data.body_bytes)))
            conn.close()
        elif ev in (cm.MG_EV_ERROR, cm.MG_EV_CLOSE):
            self.events.append((ev, data))

    def run(self, port: int) -> List[Tuple[int, Any]]:
        with cm.Manager() as mgr:
            mgr.connect("https://127.0.0.1:%d/" % port, self)
            deadline = time.monotonic() + 10
            while not any(ev == cm.MG_EV_CLOSE for ev, _ in self.events):
                assert time.monotonic() < deadline, self.events
                mgr.poll(10)
            assert mgr.connections == () and mgr.live_handles == 0
        return self.events


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_tls(pems: Dict[str, bytes], listeners: Sequence[str]) -> Iterator[List[int]]:
    """Body of a fixture: mosquitto with one TLS listener per entry of
    ``listeners`` (extra configuration lines), on ``pems`` ``ca.crt``,
    ``server.crt`` and ``server.key``; yields their ports."""
    from support.loop import wait_until
    from support.sockets import free_port, port_open

    if not os.path.exists(MOSQUITTO):
        pytest.fail("mosquitto is not installed (make system-deps)")
    # Started as root, mosquitto drops to its own user, which cannot enter
    # pytest's private temporary directories: give it a readable one.
    d = tempfile.mkdtemp(prefix="cym-mosquitto-")
    os.chmod(d, 0o755)
    files = {}
    for name in ("ca.crt", "server.crt", "server.key"):
        files[name] = os.path.join(d, name)
        with open(files[name], "wb") as f:
            f.write(pems[name])
        os.chmod(files[name], 0o644)
    ports = [free_port() for _ in listeners]
    tls = "cafile %s\ncertfile %s\nkeyfile %s\n" % (
        files["ca.crt"], files["server.crt"], files["server.key"])
    log = os.path.join(d, "mosquitto.log")  # a file: a pipe nobody reads would fill up
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("persistence false\nlog_dest file %s\nallow_anonymous true\n" % log)
        for port, extra in zip(ports, listeners):
            f.write("listener %d 127.0.0.1\n%s%s\n" % (port, tls, extra))
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or all(port_open(p) for p in ports),
                   timeout=10)
        if proc.poll() is not None:
            with open(log) as f:
                raise AssertionError("mosquitto failed: %s" % f.read())
        yield ports
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d)


def mqtts_round_trip(port: int, opts: cm.TlsOpts,
                     client_id: str = "cym-tls-test") -> List[Tuple[str, Any]]:
    """Connect over TLS, subscribe, publish to ourselves; the events seen."""
    got: List[Tuple[str, Any]] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(opts)
        elif ev == cm.MG_EV_MQTT_OPEN:
            got.append(("open", data, conn.is_tls))
            conn.mqtt_sub("cym/tls", qos=1)
        elif ev == cm.MG_EV_MQTT_CMD and data.cmd == 9:  # SUBACK
            conn.mqtt_pub("cym/tls", b"over mqtts", qos=1)
        elif ev == cm.MG_EV_MQTT_MSG:
            got.append(("msg", data.topic, data.data))
            conn.close()
        elif ev == cm.MG_EV_ERROR:
            got.append(("error", data))
        elif ev == cm.MG_EV_CLOSE:
            got.append(("close", None))

    with cm.Manager() as mgr:
        mgr.mqtt_connect("mqtts://127.0.0.1:%d" % port, handler, client_id=client_id)
        deadline = time.monotonic() + 10
        while not got or got[-1][0] != "close":
            assert time.monotonic() < deadline, got
            mgr.poll(10)
    return got
