"""Static files: directory listing, index.html, MIME types, Range and ETag.

    python examples/static_files.py --root ./public --listen http://127.0.0.1:8000
"""

import argparse
import os

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="static file server example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "static"))
    args = parser.parse_args()
    root = os.path.abspath(args.root)

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
        # Mongoose maps the URI under root, refuses "..", lists directories without
        # an index.html, answers Range requests and sets Content-Type by extension.
        conn.serve_dir(msg, root, extra_headers="Cache-Control: no-cache\r\n")

    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/ serving %s" % (host, port, root), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
