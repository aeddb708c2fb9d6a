"""The WebSocket examples, each run as a subprocess and driven by a real client."""

import json
import os

import pytest
import websocket

from support.subprocs import EXAMPLES, run_example
from support.ws import WebsocketsServer

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="needs the source tree's examples/")

LISTEN = ("--listen", "http://127.0.0.1:0")


def connect(port, path):
    return websocket.create_connection("ws://127.0.0.1:%d%s" % (port, path), timeout=10)


def test_websocket_echo(start_example):
    _, port = start_example("websocket_broadcast.py", *LISTEN)
    ws = connect(port, "/echo")
    try:
        ws.send("héllo")
        assert ws.recv() == "héllo"  # text stays text
        ws.send_binary(b"\x00\xff" * 1000)
        assert ws.recv() == b"\x00\xff" * 1000
    finally:
        ws.close()


def test_websocket_broadcast_reaches_every_client(start_example):
    _, port = start_example("websocket_broadcast.py", *LISTEN)
    clients = [connect(port, "/broadcast") for _ in range(3)]
    try:
        for sender in (0, 2):  # the sender gets its own message too
            clients[sender].send("from %d" % sender)
            assert [ws.recv() for ws in clients] == ["from %d" % sender] * 3
        clients[1].close()
        clients[0].send("after a leave")
        assert clients[2].recv() == "after a leave"
    finally:
        for ws in clients:
            ws.close()


def test_websocket_example_rejects_other_paths(start_example):
    _, port = start_example("websocket_broadcast.py", *LISTEN)
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        connect(port, "/elsewhere")
    assert err.value.status_code == 404


@pytest.fixture
def echo_server():
    """A websockets (the library) echo server on a thread: its port."""
    async def echo(conn):
        async for message in conn:
            await conn.send(message.upper())

    server = WebsocketsServer(echo)
    yield server.port
    server.stop()


def test_websocket_client(echo_server):
    out = run_example("websocket_client.py", "--url", "ws://127.0.0.1:%d/" % echo_server,
                      "one", "two", "three")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ONE", "TWO", "THREE"]


def test_websocket_client_reports_refused_connection():
    out = run_example("websocket_client.py", "--url", "ws://127.0.0.1:1/", "--timeout", "5")
    assert out.returncode == 1 and out.stderr.startswith("error:")


def test_jsonrpc_ws(start_example):
    _, port = start_example("jsonrpc_ws.py", *LISTEN)
    ws = connect(port, "/rpc")
    try:
        ws.send(json.dumps({"id": 1, "method": "sum", "params": [1, 2, 3.5]}))
        assert json.loads(ws.recv()) == {"id": 1, "result": 6.5}
        ws.send(json.dumps({"id": 2, "method": "echo", "params": {"a": [1, "x"]}}))
        assert json.loads(ws.recv()) == {"id": 2, "result": {"a": [1, "x"]}}
        # A notification (no id) gets no reply: the next reply is for id 3.
        ws.send(json.dumps({"method": "sum", "params": [1]}))
        ws.send(json.dumps({"id": 3, "method": "nope"}))
        reply = json.loads(ws.recv())
        assert reply["id"] == 3 and reply["error"]["code"] == -32601
    finally:
        ws.close()
