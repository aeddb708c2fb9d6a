"""TCP echo server: every byte a client sends comes back to it.

    python examples/tcp_echo.py --listen tcp://127.0.0.1:9000
    nc 127.0.0.1 9000
"""

import argparse

import cymongoose as cm


@cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_READ, cm.MG_EV_CLOSE)
def handler(conn: cm.Connection, ev: int, data: object) -> None:
    if ev == cm.MG_EV_ACCEPT:
        print("connected: %s:%d" % conn.remote_addr[:2], flush=True)
    elif ev == cm.MG_EV_READ:
        # Received bytes stay in the buffer until consumed: take all, send back.
        chunk = conn.recv_data()
        conn.recv_consume(len(chunk))
        conn.send(chunk)
    elif ev == cm.MG_EV_CLOSE and not conn.is_listening:
        print("closed: %s:%d" % conn.remote_addr[:2], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="TCP echo example")
    parser.add_argument("--listen", default="tcp://127.0.0.1:9000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("TCP echo on tcp://%s:%d" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
