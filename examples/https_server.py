"""HTTPS server with Mongoose's built-in TLS 1.3 (its own key must be EC P-256; see docs/tls.md).

    python examples/https_server.py --cert server.pem --key server.key
    curl --cacert ca.pem https://localhost:8443/

TLS never starts by itself: the handler calls tls_init on each accepted connection.
"""

import argparse

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTPS server example")
    parser.add_argument("--listen", default="https://127.0.0.1:8443")
    parser.add_argument("--cert", required=True, help="PEM certificate file")
    parser.add_argument("--key", required=True, help="PEM private key file")
    args = parser.parse_args()
    opts = cm.TlsOpts(cert=args.cert, key=args.key)  # file paths or PEM text

    @cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_ACCEPT:
            conn.tls_init(opts)
        else:
            conn.reply(200, "Hello over TLS 1.3\n")

    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on https://%s:%d/" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
