"""HTTP client: GET a URL with Mongoose's client and print status, headers and body.

    python examples/http_client.py --url http://127.0.0.1:8000/hello
"""

import argparse
import sys

import cymongoose as cm


def main() -> int:
    parser = argparse.ArgumentParser(description="HTTP client example")
    parser.add_argument("--url", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    result: dict = {}

    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_CONNECT:
            # The request is ours to write: request line, Host, blank line.
            host = cm.url_host(args.url)
            conn.send("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % (cm.url_uri(args.url), host))
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
