"""Compressed WebSocket echo load: like bench/ws_load.c, with permessage-deflate.

Usage: python deflate_load.py URL CONNS SECONDS SIZE

A cymongoose client (zlib in C): CONNS connections offering
permessage-deflate, each keeping one SIZE-byte text message in flight.
After a 0.5 s warm-up it counts echoes for SECONDS and prints
``RESULT msgs=N secs=T rate=R errors=E compressed=C`` (C: connections
that negotiated compression).  The payload is text that compresses
about 4:1, like JSON.
"""

import sys
import time
from typing import Any, List

import cymongoose as cm


def main() -> None:
    url, conns, seconds, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    words = b"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu "
    payload = (words * (size // len(words) + 1))[:size]
    count = [0]
    errors: List[Any] = []
    compressed = [0]

    def handler(conn: cm.Connection, ev: int, data: Any) -> None:
        if ev == cm.MG_EV_WS_OPEN:
            compressed[0] += conn.ws_compression == "deflate"
            conn.ws_send(payload)
        elif ev == cm.MG_EV_WS_MSG:
            count[0] += 1
            conn.ws_send(payload)
        elif ev == cm.MG_EV_ERROR:
            errors.append(data)

    with cm.Manager(handler) as mgr:
        for _ in range(conns):
            mgr.ws_connect(url, compression="deflate", max_size=64 << 20)
        start = time.monotonic()
        while time.monotonic() < start + 0.5:
            mgr.poll(10)
        base, t0 = count[0], time.monotonic()
        while time.monotonic() < t0 + seconds:
            mgr.poll(10)
        n, secs = count[0] - base, time.monotonic() - t0
    print("RESULT msgs=%d secs=%.3f rate=%.1f errors=%d compressed=%d"
          % (n, secs, n / secs, len(errors), compressed[0]), flush=True)


if __name__ == "__main__":
    main()
