"""Server-Sent Events: a clock pushed to every subscriber once a second.

    curl -N http://127.0.0.1:8000/events
"""

import argparse
import time
from typing import Set

import cymongoose as cm

subscribers: Set[cm.Connection] = set()


def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
    if ev == cm.MG_EV_HTTP_MSG:
        if msg.uri == "/events":
            # Start a chunked response; each event then goes out as one chunk.
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            subscribers.add(conn)
        else:
            conn.reply(200, "subscribe at /events\n")
    elif ev == cm.MG_EV_CLOSE:
        subscribers.discard(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--interval-ms", type=int, default=1000)
    args = parser.parse_args()
    mgr = cm.Manager(cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_CLOSE)(handler))
    listener = mgr.listen(args.listen)

    def tick() -> None:
        for conn in list(subscribers):
            conn.http_sse("tick", time.strftime("%H:%M:%S"))

    mgr.timer_add(args.interval_ms, tick, repeat=True)  # runs on the poll thread
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/events" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
