"""WebSocket echo server: upgrades every request, echoes every message.

    python ws_echo.py plain|declared PORT

``declared`` handles only MG_EV_HTTP_MSG and MG_EV_WS_MSG.
"""

import sys

import cymongoose
from cymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, Manager

from _common import ready, serve, usage


def plain(conn, ev, data):
    if ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, data.flags & 0x0F)
    elif ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain", "declared"):
        usage(__doc__)
    variant, port = sys.argv[1], int(sys.argv[2])
    handler = plain
    if variant == "declared":
        handler = cymongoose.handles(MG_EV_HTTP_MSG, MG_EV_WS_MSG)(plain)
    mgr = Manager(handler)
    mgr.listen("http://127.0.0.1:%d" % port)
    ready(variant)
    serve(mgr)


if __name__ == "__main__":
    main()
