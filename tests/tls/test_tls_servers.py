"""TLS on every server that listens: WSGIServer, ASGIServer, MqttBroker and
``python -m cymongoose serve|wsgi|asgi|mqtt-broker --cert --key [--ca]``."""

import os
import ssl
import textwrap
import threading
from typing import Any, Iterator, List, Optional

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import cymongoose as cm
from support.cli import Server, run_cli
from support.loop import LoopThread
from support.servers import AsgiThread, WsgiThread
from support.tls import Certs, server_and_client


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Certs:
    return server_and_client(str(tmp_path_factory.mktemp("servers-pki")))


def _verify(certs: Certs, client: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.pki.ca_path)
    if client:
        ctx.load_cert_chain(certs.client.cert_path, certs.client.key_path)
    return ctx


def _wsgi_app(environ: Any, start_response: Any) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["wsgi.url_scheme"].encode()]


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["scheme"].encode()})


def test_wsgi_server_https(certs: Certs) -> None:
    server = WsgiThread(_wsgi_app, tls=cm.TlsOpts(cert=certs.server.cert, key=certs.server.key))
    try:
        r = httpx.get(server.url.replace("127.0.0.1", "localhost") + "/",
                      verify=_verify(certs), timeout=10)
        assert (r.status_code, r.text) == (200, "https")
    finally:
        server.stop()


def test_asgi_server_https_with_client_certificates(certs: Certs) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key, ca=certs.pki.ca)
    server = AsgiThread(_asgi_app, tls=opts)
    try:
        url = server.url.replace("127.0.0.1", "localhost") + "/"
        r = httpx.get(url, verify=_verify(certs, client=True), timeout=10)
        assert (r.status_code, r.text) == (200, "https")
        with pytest.raises(httpx.HTTPError):  # no client certificate
            httpx.get(url, verify=_verify(certs), timeout=10)
    finally:
        server.stop()


def test_servers_check_tls_up_front(certs: Certs) -> None:
    bad = cm.TlsOpts(cert=certs.server.cert,
                     key=b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="TlsOpts.key"):
        WsgiThread(_wsgi_app, tls=bad)
    with cm.Manager() as mgr:
        with pytest.raises(TypeError, match="TlsOpts"):
            cm.MqttBroker(mgr, "mqtts://127.0.0.1:0", tls="cert.pem")  # type: ignore[arg-type]
        assert mgr.connections == ()


class _Paho:
    """paho-mqtt over TLS: subscribe, publish to itself, wait for the message."""

    def __init__(self, port: int, certs: Certs, client_cert: bool) -> None:
        self.got = threading.Event()
        self.failed: List[Any] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2)
        self.c.tls_set_context(_verify(certs, client_cert))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.got.set()
        self.c.connect("localhost", port)
        self.c.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        client.subscribe("cym/tls")
        client.publish("cym/tls", b"over mqtts", qos=1)

    def round_trip(self) -> bool:
        """True once the message came back (bounded wait); then disconnects."""
        try:
            return self.got.wait(10)
        finally:
            self.c.loop_stop()
            self.c.disconnect()


def test_mqtt_broker_mqtts(certs: Certs) -> None:
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, "mqtts://127.0.0.1:0",
                           tls=cm.TlsOpts(cert=certs.server.cert, key=certs.server.key))
    loop = LoopThread(mgr).start()
    try:
        assert _Paho(broker.port, certs, client_cert=False).round_trip()
    finally:
        loop.stop()
        mgr.close()


# -- the command line --------------------------------------------------------------


def _tls_args(certs: Certs, ca: bool = False) -> List[str]:
    args = ["--cert", certs.server.cert_path, "--key", certs.server.key_path]
    return args + (["--ca", certs.pki.ca_path] if ca else [])


@pytest.fixture
def app_dir(tmp_path: Any) -> str:
    (tmp_path / "tlsapps.py").write_text(textwrap.dedent('''
        def wsgi(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [environ["wsgi.url_scheme"].encode()]

        async def asgi(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["scheme"].encode()})
        '''))
    return str(tmp_path)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_cli_app_servers_https(certs: Certs, app_dir: str, kind: str) -> None:
    server = Server(kind, "tlsapps:" + kind, "--app-dir", app_dir,
                    "--listen", "https://127.0.0.1:0", *_tls_args(certs))
    try:
        assert server.url.startswith("https://")
        r = httpx.get("https://localhost:%d/" % server.port, verify=_verify(certs), timeout=10)
        assert (r.status_code, r.text) == (200, "https")
    finally:
        server.stop_cleanly()


def test_cli_serve_https_with_client_certificates(certs: Certs, tmp_path: Any) -> None:
    (tmp_path / "a.txt").write_text("secret")
    server = Server("serve", str(tmp_path), "--listen", "https://127.0.0.1:0",
                    *_tls_args(certs, ca=True))
    try:
        url = "https://localhost:%d/a.txt" % server.port
        r = httpx.get(url, verify=_verify(certs, client=True), timeout=10)
        assert (r.status_code, r.text) == (200, "secret")
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=_verify(certs), timeout=10)
    finally:
        server.stop_cleanly()


def test_cli_mqtt_broker_mqtts_with_client_certificates(certs: Certs) -> None:
    server = Server("mqtt-broker", "--listen", "mqtts://127.0.0.1:0", *_tls_args(certs, ca=True))
    try:
        assert server.url.startswith("mqtts://")
        assert _Paho(server.port, certs, client_cert=True).round_trip()
    finally:
        server.stop_cleanly()


@pytest.mark.parametrize("args, message", [
    (["mqtt-broker", "--listen", "mqtt://127.0.0.1:0", "--cert", "x.pem", "--key", "x.pem"],
     "need a mqtts:// URL"),
    (["wsgi", "m:app", "--listen", "https://127.0.0.1:0"], "needs --cert and --key"),
    (["asgi", "m:app", "--ca", "ca.pem"], "--ca needs --cert and --key"),
    (["serve", "--listen", "https://127.0.0.1:0", "--cert", "/no/such.pem", "--key", "k"],
     "cannot read /no/such.pem"),
])
def test_cli_tls_usage_errors(args: List[str], message: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
