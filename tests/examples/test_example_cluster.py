"""examples/ws_chat_cluster.py: a message from a WebSocket client of one worker
reaches a client of another worker through mosquitto."""

import os
import re

import pytest
import websocket

from support.mqtt import Mosquitto
from support.subprocs import EXAMPLES, example

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES),
                                reason="needs the source tree's examples/")


@pytest.fixture
def mosquitto(tmp_path):
    mosq = Mosquitto(str(tmp_path)).start()
    yield mosq
    mosq.stop()


def test_chat_crosses_workers_through_mosquitto(mosquitto):
    proc = example("ws_chat_cluster.py", "--workers", "2", "--listen", "http://127.0.0.1:0",
                   "--broker", "mqtt://127.0.0.1:%d" % mosquitto.port)
    clients = []
    try:
        port = proc.printed_port()
        by_worker = {}
        for _ in range(100):  # the kernel picks the worker: connect until two answered
            # Connections queue in the shared socket until a worker has joined
            # the broker and adopted it: PyPy workers on a busy machine take a while.
            ws = websocket.create_connection("ws://127.0.0.1:%d/chat" % port, timeout=60)
            clients.append(ws)
            pid = int(re.match(r"hello from worker (\d+)", ws.recv()).group(1))
            by_worker.setdefault(pid, ws)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "one worker took every connection"
        first, second = by_worker.values()
        # A worker accepts clients only once subscribed at the broker.
        first.send("hello across workers")
        while True:
            got = second.recv()
            if got == "hello across workers":
                break
        assert first.recv() == "hello across workers"  # the sender's worker too
    finally:
        for ws in clients:
            ws.close()
        code = proc.stop()
    assert code == 0, proc.output
