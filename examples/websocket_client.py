"""WebSocket client: send lines as messages and print what comes back.

    python examples/websocket_client.py --url ws://127.0.0.1:8000/echo hello world
"""

import argparse
import sys

import cymongoose as cm


def main() -> int:
    parser = argparse.ArgumentParser(description="WebSocket client example")
    parser.add_argument("--url", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("messages", nargs="*", default=["hello"])
    args = parser.parse_args()
    replies: list = []
    errors: list = []

    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_WS_OPEN:          # the server answered 101 Switching Protocols
            for text in args.messages:
                conn.ws_send(text)
        elif ev == cm.MG_EV_WS_MSG:
            replies.append(data.text)        # type: ignore[attr-defined]
        elif ev == cm.MG_EV_ERROR:
            errors.append(data)

    with cm.Manager() as mgr:
        mgr.ws_connect(args.url, handler)
        deadline = cm.millis() + int(args.timeout * 1000)
        while len(replies) < len(args.messages) and not errors and cm.millis() < deadline:
            mgr.poll(50)
    for text in replies:
        print(text)
    if len(replies) < len(args.messages):
        print("error: %s" % (errors[0] if errors else "timed out"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
