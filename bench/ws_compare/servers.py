"""WebSocket echo servers for bench/ws_compare.py, one per library.

Usage: python servers.py cymongoose|websockets|picows on|off

``on`` accepts permessage-deflate (picows has none: it refuses ``on``).
Prints ``PORT <n>`` once listening; runs until killed.  Messages up to
64 MiB are accepted by every server.
"""

import asyncio
import sys
from typing import Any


def cymongoose_server(compress: bool) -> None:
    import cymongoose as cm

    @cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG)
    def echo(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_WS_MSG:
            conn.ws_send(data.data, data.flags & 0x0F)
        else:
            conn.ws_upgrade(data, compression="deflate" if compress else None)

    mgr = cm.Manager(echo)
    lsn = mgr.listen("http://127.0.0.1:0", limits=cm.Limits(max_ws_message_size=64 << 20))
    print("PORT %d" % lsn.local_addr[1], flush=True)
    mgr.run(poll_ms=100)


def websockets_server(compress: bool) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=64 << 20,
                         compression="deflate" if compress else None) as server:
            print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
            await asyncio.get_running_loop().create_future()

    asyncio.run(main())


def picows_server(compress: bool) -> None:
    if compress:
        sys.exit("picows has no permessage-deflate")
    from picows import WSFrame, WSListener, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in (1, 2):  # text, binary (no fragments from our clients)
                transport.send(frame.msg_type, frame.get_payload_as_bytes())
            elif frame.msg_type == 8:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    async def main() -> None:
        server = await ws_create_server(lambda _req: Echo(), "127.0.0.1", 0,
                                        max_frame_size=64 << 20)
        print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    which, mode = sys.argv[1], sys.argv[2] == "on"
    {"cymongoose": cymongoose_server, "websockets": websockets_server,
     "picows": picows_server}[which](mode)
