"""HTTP server: a few routes, query variables and request headers.

    python examples/http_server.py --listen http://127.0.0.1:8000
    curl 'http://127.0.0.1:8000/hello?name=you'
"""

import argparse

import cymongoose as cm


# Declaring the events we want keeps every other event (MG_EV_POLL above all) out of Python.
@cm.handles(cm.MG_EV_HTTP_MSG)
def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
    if msg.uri == "/hello":
        name = msg.query_var("name") or "world"
        conn.reply(200, "Hello, %s!\n" % name)
    elif msg.uri == "/echo" and msg.method == "POST":
        # Echo the body back with the request's content type.
        ctype = msg.header("Content-Type", "application/octet-stream")
        conn.reply(200, msg.body_bytes, {"Content-Type": ctype})
    elif msg.uri == "/headers":
        lines = "".join("%s: %s\n" % kv for kv in msg.headers())
        conn.reply(200, lines)
    else:
        conn.reply(404, "Not found\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP server example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/" % (host, port), flush=True)
    mgr.run()  # until Ctrl-C (SIGINT) or SIGTERM; closes everything on the way out


if __name__ == "__main__":
    main()
