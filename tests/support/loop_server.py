"""Servers the signal and backpressure tests start in a child: ``python loop_server.py MODE``.

Each prints the address it listens on (``listening on URL`` or the server's
own banner), serves until SIGINT or SIGTERM, and prints ``stopped
restored=...`` (whether the previous signal handlers are back) once the
serving call has returned; the Manager modes add ``closed=...``.

Modes:
  work      Manager.run(): answers each request after 0.5 s of work inside the handler
  later     Manager.run(): answers each request 0.3 s later, from a timer
  idle      Manager.run(): answers at once
  producer  Manager.run(), raw TCP: streams 50 MiB to each client with backpressure
  wsgi      cymongoose.wsgi.serve() on two workers: each request works 0.5 s
  asgi      cymongoose.asgi.serve(): each request awaits 0.5 s
"""

import asyncio
import signal
import sys
import time
from typing import Any, Callable, List

import cymongoose as cm

BODY = bytes(i % 251 for i in range(251)) * (4 * 1024 * 1024 // 251)

# Producer: every chunk starts at a multiple of 251, so one bytes object
# serves for all of them and the byte at stream offset i is i % 251.
TOTAL = 50 * 1024 * 1024
CHUNK = bytes(i % 251 for i in range(251)) * 256
HIGH_WATER = 1024 * 1024


def say(*words: object) -> None:
    print(*words, flush=True)


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/self/status" % field)


class Stream:
    sent = 0
    max_send_len = 0


def fill(conn: cm.Connection) -> None:
    """Queue more while the send buffer is under the high-water mark."""
    st = conn.userdata
    while st.sent < TOTAL and conn.send_len < HIGH_WATER:
        n = min(len(CHUNK), TOTAL - st.sent)
        conn.send(CHUNK if n == len(CHUNK) else CHUNK[:n])
        st.sent += n
    st.max_send_len = max(st.max_send_len, conn.send_len)
    if st.sent == TOTAL and not conn.is_draining:
        conn.drain()  # flush what is queued, then close


@cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_WRITE, cm.MG_EV_CLOSE)
def producer(conn: cm.Connection, ev: int, data: object) -> None:
    if ev == cm.MG_EV_ACCEPT:
        conn.userdata = Stream()
    if ev == cm.MG_EV_CLOSE:
        st = conn.userdata
        say("done sent=%d max_send_len=%d hwm_kb=%d" % (st.sent, st.max_send_len,
                                                        rss_kb("VmHWM")))
        return
    fill(conn)


def main(mode: str) -> None:
    mgr = cm.Manager()

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def http(conn: cm.Connection, ev: int, hm: object) -> None:
        if mode == "idle":
            conn.reply(200, b"ok")
        elif mode == "work":
            say("busy")
            time.sleep(0.5)  # the work this request needs
            conn.reply(200, BODY, {"Content-Type": "application/octet-stream"})
        else:
            say("busy")
            mgr.timer_add(300, lambda: conn.reply(200, BODY))

    if mode == "producer":
        listener = mgr.listen("tcp://127.0.0.1:0", producer)
        mgr.poll(0)
        say("listening on tcp://127.0.0.1:%d base_kb=%d"
            % (listener.local_addr[1], rss_kb("VmRSS")))
    else:
        listener = mgr.listen("http://127.0.0.1:0", http)
        say("listening on http://127.0.0.1:%d/" % listener.local_addr[1])
    mgr.run(poll_ms=50)
    say("stopped restored=%s closed=%s" % (restored(), not mgr.connections))


def wsgi_app(environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
    say("busy")
    time.sleep(0.5)  # the work this request needs
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [BODY]


async def asgi_app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    say("busy")
    await asyncio.sleep(0.5)  # the work this request waits for
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": BODY})


def restored() -> bool:
    """The signal handlers are Python's defaults again."""
    return (signal.getsignal(signal.SIGINT) is signal.default_int_handler
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)


def serve_app(mode: str) -> None:
    if mode == "wsgi":
        from cymongoose.wsgi import serve
        serve(wsgi_app, url="http://127.0.0.1:0", workers=2)
    else:
        from cymongoose.asgi import serve as serve_asgi
        serve_asgi(asgi_app, url="http://127.0.0.1:0")
    say("stopped restored=%s" % restored())


if __name__ == "__main__":
    if sys.argv[1] in ("wsgi", "asgi"):
        serve_app(sys.argv[1])
    else:
        main(sys.argv[1])
