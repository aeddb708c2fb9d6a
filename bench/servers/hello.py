"""HTTP hello-world server replying ``ok``.

    python hello.py plain|declared PORT

``plain`` receives every event and tests for MG_EV_HTTP_MSG itself (what a
0.2.5 handler looks like); ``declared`` is decorated with
``@cymongoose.handles(MG_EV_HTTP_MSG)`` so no other event crosses into Python.
"""

import sys

import cymongoose
from cymongoose import MG_EV_HTTP_MSG, Manager

from _common import ready, serve, usage


def plain(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"ok")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain", "declared"):
        usage(__doc__)
    variant, port = sys.argv[1], int(sys.argv[2])
    if variant == "declared":
        @cymongoose.handles(MG_EV_HTTP_MSG)
        def handler(conn, ev, data):
            conn.reply(200, b"ok")
    else:
        handler = plain
    mgr = Manager(handler)
    mgr.listen("http://127.0.0.1:%d" % port)
    ready(variant)
    serve(mgr)


if __name__ == "__main__":
    main()
