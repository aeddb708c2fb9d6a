"""WSS and MQTTS: WebSocket and MQTT over Mongoose's built-in TLS."""

import time
from typing import Any, Iterator, List, Tuple

import pytest
import websocket

import cymongoose as cm
from support.tls import Certs, Pki, mqtts_round_trip, server_and_client
from support.tls import mosquitto_tls as mosquitto_tls_body
from support.ws import SyncClient



@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Certs:
    return server_and_client(str(tmp_path_factory.mktemp("wss-pki")))


# -- WSS -------------------------------------------------------------------------


def _wss_echo(opts: cm.TlsOpts) -> Any:
    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_ACCEPT:
            conn.tls_init(opts)
        elif ev == cm.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == cm.MG_EV_WS_MSG:
            op = cm.WEBSOCKET_OP_TEXT if data.flags & 0x0F == 1 else cm.WEBSOCKET_OP_BINARY
            conn.ws_send(data.data, op)

    return handler


def test_wss_echo_with_websocket_client(server_factory: Any, certs: Certs) -> None:
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port = server_factory(_wss_echo(opts), url="wss://127.0.0.1:0")
    ws = websocket.create_connection("wss://127.0.0.1:%d/echo" % port, timeout=5,
                                     sslopt={"ca_certs": certs.pki.ca_path})
    try:
        ws.send("hello over wss")
        assert ws.recv() == "hello over wss"
        ws.send_binary(bytes(range(256)) * 64)
        assert ws.recv() == bytes(range(256)) * 64
    finally:
        ws.close()


def test_wss_echo_with_websockets(server_factory: Any, certs: Certs) -> None:
    """The other client library, verifying our certificate with the fixture's CA."""
    import ssl

    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port = server_factory(_wss_echo(opts), url="wss://127.0.0.1:0")
    ctx = ssl.create_default_context(cafile=certs.pki.ca_path)
    with SyncClient("wss://127.0.0.1:%d/echo" % port, ssl=ctx, server_hostname="localhost",
                    open_timeout=5, close_timeout=5) as ws:
        ws.send("héllo over wss")
        assert ws.recv(timeout=5) == "héllo over wss"
        ws.send(bytes(range(256)) * 256)
        assert ws.recv(timeout=5) == bytes(range(256)) * 256
        assert ws.ws.state.name == "OPEN"


def test_wss_client_to_wss_server(server_factory: Any, certs: Certs) -> None:
    """Our ws_connect("wss://...") with tls_init in MG_EV_CONNECT."""
    opts = cm.TlsOpts(cert=certs.server.cert, key=certs.server.key)
    _, port = server_factory(_wss_echo(opts), url="wss://127.0.0.1:0")
    client_opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost")
    got: List[Tuple[str, Any]] = []

    def client(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_CONNECT:
            conn.tls_init(client_opts)
        elif ev == cm.MG_EV_WS_OPEN:
            got.append(("open", conn.is_tls))
            conn.ws_send("ping over wss")
        elif ev == cm.MG_EV_WS_MSG:
            got.append(("msg", data.text))
            conn.close()
        elif ev == cm.MG_EV_ERROR:
            got.append(("error", data))

    with cm.Manager() as mgr:
        mgr.ws_connect("wss://localhost:%d/echo" % port, client)
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            mgr.poll(10)
    assert got == [("open", True), ("msg", "ping over wss")]


# -- MQTTS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mosquitto_tls(certs: Certs) -> Iterator[List[int]]:
    """mosquitto with two TLS 1.3 listeners: (plain TLS port, client-cert port)."""
    pems = {"ca.crt": certs.pki.ca, "server.crt": certs.server.cert,
            "server.key": certs.server.key}
    yield from mosquitto_tls_body(pems, ["tls_version tlsv1.3",
                                         "tls_version tlsv1.3\nrequire_certificate true"])


def test_mqtts_to_mosquitto(mosquitto_tls: List[int], certs: Certs) -> None:
    got = mqtts_round_trip(mosquitto_tls[0], cm.TlsOpts(ca=certs.pki.ca, name="localhost"))
    assert got == [("open", 0, True), ("msg", "cym/tls", b"over mqtts"), ("close", None)]


def test_mqtts_client_certificate(mosquitto_tls: List[int], certs: Certs) -> None:
    opts = cm.TlsOpts(ca=certs.pki.ca, name="localhost", cert=certs.client.cert,
                      key=certs.client.key)
    got = mqtts_round_trip(mosquitto_tls[1], opts)
    assert got == [("open", 0, True), ("msg", "cym/tls", b"over mqtts"), ("close", None)]


def test_mqtts_untrusted_broker(mosquitto_tls: List[int], certs: Certs,
                                tmp_path: Any) -> None:
    other = Pki(str(tmp_path), "not the broker's CA")
    got = mqtts_round_trip(mosquitto_tls[0], cm.TlsOpts(ca=other.ca, name="localhost"))
    assert [kind for kind, *_ in got] == ["error", "close"]
    assert "CA" in got[0][1]
