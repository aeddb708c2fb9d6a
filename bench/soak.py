"""Soak: many connections opened and closed plus many keep-alive requests
against one server process; RSS and open descriptors must stay flat.

    python bench/soak.py [--requests 1000000] [--connections 100000] [--python PY]

The server (a Manager hello world with ``@handles``, default Limits) runs in
its own process on PY; wrk loads it.  Each phase runs until wrk has made the
asked number of requests; the server's RSS and descriptor count are sampled
after a warm-up and after every phase.  Not CI: the figures go to
docs/hardening.md.
"""

import argparse
import os
import re
import subprocess
import sys
import time

SERVER = r"""
import sys, cymongoose as cm
@cm.handles(cm.MG_EV_HTTP_MSG)
def h(c, ev, hm):
    c.reply(200, b"ok")
mgr = cm.Manager(h)
print(mgr.listen("http://127.0.0.1:0").local_addr[1], flush=True)
while True:
    mgr.poll(100)
"""


def sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def wrk(port, requests, close, rate_guess):
    """Run wrk until about ``requests`` were made; returns (requests, errors)."""
    done = errors = 0
    while done < requests:
        secs = max(2, min(30, int((requests - done) / rate_guess) + 1))
        args = ["wrk", "-t1", "-c50", "-d%ds" % secs, "http://127.0.0.1:%d/" % port]
        if close:
            args[3:3] = ["-H", "Connection: close"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=secs + 60).stdout
        m = re.search(r"(\d+) requests in ([\d.]+)s", out)
        if not m:
            raise SystemExit("wrk said:\n" + out)
        n, took = int(m.group(1)), float(m.group(2))
        done += n
        rate_guess = max(1000.0, n / took)
        e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        errors += sum(map(int, e.groups())) if e else 0
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(non2xx.group(1)) if non2xx else 0
    return done, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    server = subprocess.Popen([a.python, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                              cwd="/")
    try:
        port = int(server.stdout.readline())
        wrk(port, 50_000, False, 10_000)  # warm-up (PyPy's JIT, allocator pools)
        time.sleep(1)
        base = sample(server.pid)
        print("%-34s RSS %7d KiB  fds %4d" % ("after warm-up", base[0], base[1]))
        t = time.monotonic()
        n, err = wrk(port, a.requests, False, 10_000)
        time.sleep(1)
        s = sample(server.pid)
        print("%-34s RSS %7d KiB  fds %4d  (%d requests, %d errors, %.0f s)"
              % ("after keep-alive requests", s[0], s[1], n, err, time.monotonic() - t))
        t = time.monotonic()
        n, err = wrk(port, a.connections, True, 5_000)
        time.sleep(1)
        s = sample(server.pid)
        print("%-34s RSS %7d KiB  fds %4d  (%d connections, %d errors, %.0f s)"
              % ("after connection churn", s[0], s[1], n, err, time.monotonic() - t))
        print("python: %s" % subprocess.run([a.python, "-VV"], capture_output=True,
                                            text=True).stdout.split("\n")[0])
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
