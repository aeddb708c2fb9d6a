"""asyncio: AsyncManager serves HTTP while other asyncio tasks run on the same loop.

    python examples/asyncio_server.py --listen http://127.0.0.1:8000
"""

import argparse
import asyncio
import signal

import cymongoose as cm

hits = 0


@cm.handles(cm.MG_EV_HTTP_MSG)
def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
    global hits
    hits += 1
    conn.reply_json({"hits": hits, "path": msg.uri})


async def main(listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The Manager polls on its own thread; handlers run there, not on this loop.
    async with cm.AsyncManager(handler) as am:
        listener = am.listen(listen)
        host, port = cm.url_host(listen), listener.local_addr[1]  # port 0: the one picked
        print("Listening on http://%s:%d/" % (host, port), flush=True)
        while not stop.is_set():   # another task's work goes on meanwhile
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except asyncio.TimeoutError:
                print("still serving, %d hits" % hits, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asyncio example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    asyncio.run(main(parser.parse_args().listen))
