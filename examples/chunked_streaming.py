"""Chunked streaming: a large response produced piece by piece without buffering it whole.

    curl -N 'http://127.0.0.1:8000/count?n=100000'

Each poll sends more while the send buffer is below a high-water mark, so memory
stays bounded however slow the client is.
"""

import argparse
from typing import Dict

import cymongoose as cm

HIGH_WATER = 256 * 1024
streams: Dict[cm.Connection, list] = {}  # conn -> [next number, last number]


def pump(conn: cm.Connection) -> None:
    state = streams[conn]
    while conn.send_len < HIGH_WATER and state[0] <= state[1]:
        end = min(state[0] + 1000, state[1] + 1)
        conn.http_chunk("".join("%d\n" % i for i in range(state[0], end)))
        state[0] = end
    if state[0] > state[1]:
        conn.http_chunk(b"")  # the empty chunk ends the response
        del streams[conn]


def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
    if ev == cm.MG_EV_HTTP_MSG:
        n = int(msg.query_var("n") or "1000")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        streams[conn] = [1, n]
        pump(conn)
    elif ev in (cm.MG_EV_WRITE, cm.MG_EV_POLL) and conn in streams:
        pump(conn)  # the socket drained some: top the buffer up again
    elif ev == cm.MG_EV_CLOSE:
        streams.pop(conn, None)


def main() -> None:
    parser = argparse.ArgumentParser(description="chunked streaming example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/count?n=100000" % (host, port), flush=True)
    mgr.run(poll_ms=50)


if __name__ == "__main__":
    main()
