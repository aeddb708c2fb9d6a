"""HTTP client: GET a URL with Mongoose's client and print status, headers and body.

    python examples/http_client.py --url http://127.0.0.1:8000/hello
    python examples/http_client.py --url https://localhost:8443/ --ca ca.pem
"""

import argparse
import sys

import cymongoose as cm


def main() -> int:
    parser = argparse.ArgumentParser(description="HTTP client example")
    parser.add_argument("--url", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--ca", help="CA certificate (PEM file) to verify an https:// server")
    args = parser.parse_args()
    if cm.url_is_ssl(args.url) and not args.ca:
        parser.error("https:// needs --ca: without it Mongoose would not verify the server")
    host = cm.url_host(args.url)
    result: dict = {}

    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_CONNECT:
            if cm.url_is_ssl(args.url):  # TLS starts only when asked; the name is checked too
                conn.tls_init(cm.TlsOpts(ca=args.ca, name=host.strip("[]")))
            # The request is ours to write: request line, Host, blank line.
            conn.send("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                      % (cm.url_uri(args.url), host, cm.url_port(args.url)))
        elif ev == cm.MG_EV_HTTP_MSG:
            msg: cm.HttpMessage = data  # type: ignore[assignment]
            result.update(status=msg.status(), headers=msg.headers(), body=msg.body_bytes)
            conn.close()
        elif ev == cm.MG_EV_ERROR:
            result["error"] = data

    with cm.Manager() as mgr:
        mgr.connect(args.url, handler)
        deadline = cm.millis() + int(args.timeout * 1000)
        while not result and cm.millis() < deadline:
            mgr.poll(50)
    if "status" not in result:
        print("error: %s" % result.get("error", "timed out"), file=sys.stderr)
        return 1
    print("HTTP %s" % result["status"])
    for name, value in result["headers"]:
        print("%s: %s" % (name, value))
    print()
    sys.stdout.write(result["body"].decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
