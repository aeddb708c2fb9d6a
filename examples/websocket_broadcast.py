"""WebSocket echo and broadcast.

    ws://127.0.0.1:8000/echo        every message comes back to its sender
    ws://127.0.0.1:8000/broadcast   every message goes to every connected client
"""

import argparse
from typing import Set

import cymongoose as cm

room: Set[cm.Connection] = set()


@cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG, cm.MG_EV_CLOSE)
def handler(conn: cm.Connection, ev: int, data: object) -> None:
    if ev == cm.MG_EV_HTTP_MSG:
        msg: cm.HttpMessage = data  # type: ignore[assignment]
        if msg.uri in ("/echo", "/broadcast"):
            conn.userdata = msg.uri  # remember the room past this handler call
            conn.ws_upgrade(msg)     # MG_EV_WS_OPEN fires inside this call
            if msg.uri == "/broadcast":
                room.add(conn)
        else:
            conn.reply(404, "use /echo or /broadcast\n")
    elif ev == cm.MG_EV_WS_MSG:
        ws: cm.WsMessage = data  # type: ignore[assignment]
        op = ws.flags & 0x0F     # flags is the raw header byte: keep text as text
        if conn.userdata == "/echo":
            conn.ws_send(ws.data, op)
        else:
            for peer in room:
                peer.ws_send(ws.data, op)
    elif ev == cm.MG_EV_CLOSE:
        room.discard(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description="WebSocket echo and broadcast example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on ws://%s:%d/echo and /broadcast" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
