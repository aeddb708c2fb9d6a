"""A WebSocket chat served by N worker processes that share messages through MQTT.

    mosquitto -p 1883 &
    python examples/ws_chat_cluster.py --workers 4 --broker mqtt://127.0.0.1:1883

Connect WebSocket clients to ws://127.0.0.1:8000/chat: each one first gets
``hello from worker PID``, then every message any client sends, whichever
worker it is connected to.  The master binds the port once and keeps the
workers running (``cymongoose.supervisor``); each worker relays what its
clients say through the broker (``cymongoose.fanout``) and delivers what
arrives from the broker to its own clients.  Run the same command on
several machines against one broker (cluster) to chat across all of them.
"""

import argparse
import os
import socket
import sys
from typing import Any, List, Set
from urllib.parse import urlsplit

import cymongoose as cm
from cymongoose.fanout import Fanout
from cymongoose.supervisor import Supervisor, bind, notify_ready


def worker(socks: List[socket.socket], broker: str) -> None:
    """One worker process: serve /chat on the inherited socket until SIGTERM."""
    clients: Set[cm.Connection] = set()
    pid = os.getpid()

    def deliver(channel: str, data: bytes) -> None:  # from the broker: to our clients
        for peer in list(clients):
            peer.ws_send(data, cm.WEBSOCKET_OP_TEXT)

    @cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG, cm.MG_EV_CLOSE)
    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            if data.uri == "/chat":
                conn.ws_upgrade(data)
                clients.add(conn)
                conn.ws_send("hello from worker %d" % pid, cm.WEBSOCKET_OP_TEXT)
            else:
                conn.reply(200, "worker %d; chat on /chat\n" % pid)
        elif ev == cm.MG_EV_WS_MSG:
            fan.publish("chat", data.data)  # to every worker, this one included
        elif ev == cm.MG_EV_CLOSE:
            clients.discard(conn)

    with cm.Manager(handler) as mgr:
        fan = Fanout(mgr, broker, deliver, prefix="ws_chat_cluster/")
        while not fan.connected:  # take clients only once messages can reach them
            mgr.poll(50)
        for sock in socks:
            mgr.listen_fd(sock.fileno(), http=True)
        notify_ready()
        mgr.run()
        fan.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="WebSocket chat on N workers over MQTT")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    url = urlsplit(args.listen)
    sock = bind(url.hostname or "127.0.0.1", url.port or 0)
    status = Supervisor(lambda socks: worker(socks, args.broker), [sock],
                        workers=args.workers).run(
        lambda: print("Chat on ws://%s:%d/chat (%d workers, broker %s)"
                      % (url.hostname, sock.getsockname()[1], args.workers, args.broker),
                      flush=True))
    sock.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
