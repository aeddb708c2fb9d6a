"""WebSocket echo client for the Autobahn client cases (a fuzzing server drives them).

Usage: python echo_client.py HOST:PORT [AGENT]

Asks the fuzzing server for its case count (``/getCaseCount``), runs every
case (``/runCase?case=N&agent=AGENT``) echoing each message as received,
then asks it to write its reports (``/updateReports``).  Like the echo
server, it offers permessage-deflate and accepts messages up to 64 MiB.
"""

import sys
import time
from typing import Any, List

import cymongoose as cm

MAX_SIZE = 64 * 1024 * 1024
CASE_TIMEOUT = 120.0  # seconds; the longest case (9.x) takes a few


def _session(mgr: cm.Manager, url: str, texts: List[str]) -> None:
    """Open one WebSocket, echo (or collect, into ``texts``) until it closes."""
    done: List[bool] = []

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_WS_MSG:
            if url.endswith("/getCaseCount"):
                texts.append(data.text)
            else:
                conn.ws_send(data.data, data.flags & 0x0F)
        elif ev == cm.MG_EV_CLOSE:
            done.append(True)

    mgr.ws_connect(url, handler, compression="deflate", max_size=MAX_SIZE)
    deadline = time.monotonic() + CASE_TIMEOUT
    while not done and time.monotonic() < deadline:
        mgr.poll(20)
    if not done:
        sys.exit("case %s did not finish" % url)


def main() -> None:
    base = "ws://" + sys.argv[1]
    agent = sys.argv[2] if len(sys.argv) > 2 else "cymongoose"
    with cm.Manager() as mgr:
        texts: List[str] = []
        _session(mgr, base + "/getCaseCount", texts)
        count = int(texts[0])
        for case in range(1, count + 1):
            _session(mgr, "%s/runCase?case=%d&agent=%s" % (base, case, agent), [])
        _session(mgr, "%s/updateReports?agent=%s" % (base, agent), [])
    print("ran %d cases" % count)


if __name__ == "__main__":
    main()
