"""Wakeup: slow work in worker threads, results handed back to the event loop.

    curl 'http://127.0.0.1:8000/square?n=12'

Only Manager.wakeup() may be called from another thread; the reply is sent
on the poll thread when MG_EV_WAKEUP arrives for the waiting connection.
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="wakeup example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    pool = ThreadPoolExecutor(args.workers)

    def work(conn_id: int, n: int) -> None:
        time.sleep(0.05)  # stands for slow, blocking work
        mgr.wakeup(conn_id, str(n * n).encode())  # thread-safe

    @cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WAKEUP)
    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            n = int(data.query_var("n") or "0")  # type: ignore[attr-defined]
            pool.submit(work, conn.id, n)        # pass the id, never the view
        elif ev == cm.MG_EV_WAKEUP:
            conn.reply(200, data + b"\n")        # type: ignore[operator]

    mgr = cm.Manager(handler, enable_wakeup=True)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/square?n=12" % (host, port), flush=True)
    try:
        mgr.run()
    finally:
        pool.shutdown(wait=False)


if __name__ == "__main__":
    main()
