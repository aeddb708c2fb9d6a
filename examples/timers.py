"""Timers: a one-shot and a repeating tick that cancels itself, running in
the same event loop as an HTTP server.

    python examples/timers.py --listen http://127.0.0.1:8000 --ticks 5
    curl http://127.0.0.1:8000/     # {"ticks": ..., "ticking": ...}
"""

import argparse

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="timers example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--ticks", type=int, default=5, help="stop ticking after this many")
    parser.add_argument("--interval-ms", type=int, default=200)
    args = parser.parse_args()
    ticks = []

    def tick() -> None:
        ticks.append(cm.millis())
        print("tick %d" % len(ticks), flush=True)
        if len(ticks) == args.ticks:
            repeating.cancel()  # a timer may cancel itself (or any other) from a callback
            print("stopped ticking after %d ticks" % len(ticks), flush=True)

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
        conn.reply_json({"ticks": len(ticks), "ticking": repeating.active})

    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/" % (host, port), flush=True)

    # Callbacks run on the poll thread, inside poll(); the Manager keeps each
    # Timer alive, so dropping the returned object is fine.
    mgr.timer_add(0, lambda: print("started", flush=True), run_now=True)  # on the first poll
    mgr.timer_add(args.interval_ms // 2, lambda: print("one-shot fired", flush=True))
    repeating = mgr.timer_add(args.interval_ms, tick, repeat=True)
    mgr.run()  # until Ctrl-C


if __name__ == "__main__":
    main()
