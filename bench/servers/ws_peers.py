"""WebSocket echo servers of other projects, for the bench's comparison.

    python ws_peers.py websockets|picows PORT

Both run on uvloop, echo every message and print ``READY`` once listening.
"""

import asyncio
import sys

import uvloop


async def websockets_server(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        print("READY", flush=True)
        await asyncio.Future()


async def picows_server(port: int) -> None:
    from picows import WSListener, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport, frame):  # type: ignore[no-untyped-def]
            transport.send(frame.msg_type, frame.get_payload_as_bytes())

    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
    print("READY", flush=True)
    await server.serve_forever()


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("websockets", "picows"):
        sys.exit(__doc__)
    run = websockets_server if sys.argv[1] == "websockets" else picows_server
    uvloop.run(run(int(sys.argv[2])))


if __name__ == "__main__":
    main()
