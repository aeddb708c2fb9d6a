"""Connection storm: N clients connect at once; how long until the server
holds them all, and what each idle connection costs in memory.

    python bench/storm.py [-n 10000] [--python PY ...]

Each server runs in its own process: ours (a Manager hello world with
``@handles``, default settings) on each interpreter given, and a plain
asyncio server (``backlog=2048``) on this interpreter.  The client opens N
non-blocking connects in one burst and polls until the server reports N
accepted (it prints its count on stdout), bounded at 60 s.  RSS is read from
/proc before and after.  The process raises its own descriptor limit.
"""

import argparse
import re
import resource
import selectors
import socket
import subprocess
import sys
import time

OURS = r"""
import sys, cymongoose as cm
n = 0
@cm.handles(cm.MG_EV_ACCEPT)
def h(c, ev, d):
    global n
    n += 1
mgr = cm.Manager(h)
print(mgr.listen("http://127.0.0.1:0").local_addr[1], flush=True)
while True:
    mgr.poll(50)
    sys.stdout.write("%d\n" % n); sys.stdout.flush()
"""

ASYNCIO = r"""
import asyncio, sys
n = 0
conns = []
async def main():
    async def on(r, w):
        global n
        n += 1
        conns.append(w)
    srv = await asyncio.start_server(on, "127.0.0.1", 0, backlog=2048)
    print(srv.sockets[0].getsockname()[1], flush=True)
    while True:
        await asyncio.sleep(0.05)
        sys.stdout.write("%d\n" % n); sys.stdout.flush()
asyncio.run(main())
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def storm(python, code, n):
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, text=True, cwd="/",
                            preexec_fn=lambda: resource.setrlimit(
                                resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)))
    try:
        port = int(proc.stdout.readline())
        time.sleep(1)
        before = rss_kib(proc.pid)
        socks = []
        start = time.monotonic()
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        count = 0
        while time.monotonic() - start < 60:
            line = proc.stdout.readline()
            count = int(line)
            if count >= n:
                break
        took = time.monotonic() - start
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        for s in socks:
            s.close()
        return count, took, (after - before) * 1024.0 / max(count, 1)
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--python", action="append", default=[])
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = [("asyncio (%s)" % sys.version.split()[0], sys.executable, ASYNCIO)]
    for py in a.python or [sys.executable]:
        ver = subprocess.run([py, "-c", "import platform; print(platform.python_implementation(),"
                              " platform.python_version())"], capture_output=True,
                             text=True).stdout.strip()
        rows.append(("cymongoose (%s)" % ver, py, OURS))
    print("%d simultaneous connects, descriptor limit %d" % (a.n, hard))
    print("%-32s %10s %10s %14s" % ("server", "accepted", "seconds", "bytes/conn"))
    for name, py, code in rows:
        count, took, per = storm(py, code, a.n)
        print("%-32s %10d %10.2f %14.0f" % (name, count, took, per))


if __name__ == "__main__":
    main()
