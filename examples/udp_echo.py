"""UDP echo server: every datagram goes back to whoever sent it.

    python examples/udp_echo.py --listen udp://127.0.0.1:9001
    nc -u 127.0.0.1 9001
"""

import argparse

import cymongoose as cm


@cm.handles(cm.MG_EV_READ)
def handler(conn: cm.Connection, ev: int, data: object) -> None:
    # A UDP listener is one connection for all peers: each READ holds one
    # datagram, and send() answers the peer that sent it (remote_addr).
    datagram = conn.recv_data()
    conn.recv_consume(len(datagram))
    conn.send(datagram)


def main() -> None:
    parser = argparse.ArgumentParser(description="UDP echo example")
    parser.add_argument("--listen", default="udp://127.0.0.1:9001")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("UDP echo on udp://%s:%d" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
