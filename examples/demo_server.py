"""Demo server: a hello route, a JSON route and a static directory.

    python examples/demo_server.py --listen http://127.0.0.1:8000

Ctrl-C stops it.
"""

import argparse
import os

import cymongoose as cm

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--root", default=os.path.join(HERE, "static"))
    args = parser.parse_args()

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
        if msg.uri == "/hello":
            conn.reply(200, "Hello from cymongoose\n")
        elif msg.uri == "/api/info":
            conn.reply_json({"server": "cymongoose", "version": cm.__version__})
        else:
            conn.serve_dir(msg, args.root)

    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]
    print("cymongoose demo on http://%s:%d/  (/hello, /api/info, static files)" % (host, port))
    print("Press Ctrl+C to stop", flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
