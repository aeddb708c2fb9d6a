"""WebSocket echo server for the Autobahn cases: every message goes back as received.

It accepts permessage-deflate (chapters 12 and 13) and messages up to
64 MiB (chapter 9 sends up to 16 MiB).

Usage: python echo_server.py [PORT]   (0 picks a free port; the chosen port
is printed as ``PORT <n>`` on stdout).  Runs until SIGINT or SIGTERM.
"""

import sys
from typing import Any

import cymongoose as cm


@cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG)
def echo(conn: cm.Connection, ev: int, data: Any) -> None:
    if ev == cm.MG_EV_HTTP_MSG:
        conn.ws_upgrade(data, compression="deflate")
    else:
        conn.ws_send(data.data, data.flags & 0x0F)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    mgr = cm.Manager(echo)
    listener = mgr.listen("http://127.0.0.1:%d" % port,
                          limits=cm.Limits(max_ws_message_size=64 * 1024 * 1024))
    addr = listener.local_addr
    assert addr is not None
    print("PORT %d" % addr[1], flush=True)
    mgr.run(poll_ms=50)


if __name__ == "__main__":
    main()
