"""Servers the loop tests start in a subprocess: ``python loop_server.py MODE``.

Each prints ``port N`` once listening, then runs ``Manager.run()`` until a
signal, and prints ``stopped`` (and whether the signal handlers were
restored) once ``run()`` has returned.

Modes:
  work      answers each request after 0.5 s of work inside the handler
  later     answers each request 0.3 s later, from a timer
  idle      answers at once
  producer  raw TCP: streams 50 MiB to each client with backpressure
"""

import signal
import sys
import time

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
        say("port %d base_kb=%d" % (listener.local_addr[1], rss_kb("VmRSS")))
    else:
        listener = mgr.listen("http://127.0.0.1:0", http)
        say("port %d" % listener.local_addr[1])
    mgr.run(poll_ms=50)
    restored = (signal.getsignal(signal.SIGINT) is signal.default_int_handler
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    say("stopped restored=%s closed=%s" % (restored, not mgr.connections))


if __name__ == "__main__":
    main(sys.argv[1])
