"""Connection storm and idle connections: N clients connect at once; how long
until the server holds them all, what each idle connection costs in memory,
and what one poll with N idle connections costs.

    python bench/storm.py [-n 10000] [--repeat 3] [--python PY ...] [--only NAME,...]

Servers, each in its own process:
- ``asyncio``: a plain ``asyncio.start_server`` (``backlog=2048``) on this interpreter;
- ``uvicorn``: uvicorn (uvloop, httptools) with a hello-world ASGI app, from
  ``bench/.venv-peers`` (made by bench/servers_compare.py's peers_venv());
- ``c-unpatched`` / ``c-patched``: bench/c_idle_server.c compiled with gcc on
  the pristine vendor/mongoose.c and on a copy with vendor/patches applied
  (vendor/mgpatch.py, as build_ffi.py does), written to bench/bin/; the
  patched one with ``MG_SOCK_LISTEN_BACKLOG_SIZE=1024``, the backlog
  ``Manager.listen`` passes by default;
- ``ours-handles`` / ``ours-all`` on each interpreter given: a Manager hello
  world whose handler declares ``@handles(MG_EV_ACCEPT, MG_EV_HTTP_MSG)``,
  and one whose handler receives every event (``MG_EV_POLL`` per connection
  per poll included).

The client opens N non-blocking connects in one burst (bound to 127.0.0.2,
127.0.0.3, ... in blocks of 25,000 when N exceeds that, since one source
address has about 28,000 ephemeral ports) and waits, at most 60 s, until the
server has accepted all of them: C and ours print their accept count after
every poll, asyncio every 50 ms; uvicorn's count is its socket descriptors in
/proc.  Then C and ours time POLLS polls with a zero timeout (wall and
process CPU per poll) and report RSS; RSS growth over the N connections gives
bytes per idle connection (ours also after a gc.collect(): "B/conn gc"), and
the growth between half and all of the burst accepted, per connection, what
one more connection costs a warm server ("B 2nd half").  Server CPU during the storm comes from
/proc/PID/stat.

The process raises its descriptor limit to the hard limit and the servers
inherit it; N must stay below the hard limit (each side holds N descriptors).
See bench/README.md ("C10k") for raising the hard limit.
"""

import argparse
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from mqtt_bench import cpu_seconds, free_port, wait_port

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BIN = os.path.join(BENCH, "bin")
sys.path.insert(0, os.path.join(ROOT, "vendor"))  # mgpatch

PER_SOURCE = 25000
DEADLINE = 60.0

OURS = r"""
import gc, select, sys, time, cymongoose as cm
n = 0
def h(c, ev, d):
    global n
    if ev == cm.MG_EV_ACCEPT:
        n += 1
    elif ev == cm.MG_EV_HTTP_MSG:
        c.reply(200, b"hello world")
if sys.argv[3] == "handles":
    h = cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_HTTP_MSG)(h)
want, polls = int(sys.argv[1]), int(sys.argv[2])
def rss():
    with open("/proc/self/status") as f:
        return int([l for l in f if l.startswith("VmRSS:")][0].split()[1])
mgr = cm.Manager(h)
print("PORT %d" % mgr.listen("http://127.0.0.1:0").local_addr[1], flush=True)
last, measured, marked = -1, False, False
while not select.select([sys.stdin], [], [], 0)[0]:
    mgr.poll(50)
    if n != last:
        last = n
        sys.stdout.write("%d\n" % n); sys.stdout.flush()
    if not marked and n >= want // 2:
        marked = True
        sys.stdout.write("MARK %d %d\n" % (n, rss())); sys.stdout.flush()
    if not measured and n >= want:
        measured = True
        for _ in range(polls // 2 + 1):  # warm up (PyPy's JIT)
            mgr.poll(0)
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(polls):
            mgr.poll(0)
        r1 = rss()
        gc.collect()  # what is left once the garbage of the storm is gone
        sys.stdout.write("RESULT %d %d %d %d\n" % ((time.perf_counter_ns() - t0) // polls,
                         (time.process_time_ns() - c0) // polls, r1, rss()))
        sys.stdout.flush()
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
    print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
    last = -1
    while True:
        await asyncio.sleep(0.05)
        if n != last:
            last = n
            sys.stdout.write("%d\n" % n); sys.stdout.flush()
asyncio.run(main())
"""

ASGI_APP = r"""
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello world"})
"""


class Server:
    """One server process for one run."""

    def __init__(self, argv: List[str], cwd: str, port: Optional[int] = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0, cwd=cwd)
        self.port = port
        self.result: Optional[Tuple[int, ...]] = None
        self.mark: Optional[Tuple[int, ...]] = None  # (accepted, RSS KiB) at half
        self.buf = b""
        if port is None:
            line = self.line(20.0)
            if not line.startswith("PORT "):
                raise RuntimeError("%s did not start: %r" % (argv[0], line))
            self.port = int(line.split()[1])
        else:
            wait_port(port, self.proc)

    def accepted(self, timeout: float) -> Optional[int]:
        """The next count the server prints (None when none came in time);
        a RESULT line is stored."""
        while True:
            line = self.line(timeout)
            if not line:
                return None
            if line.startswith("RESULT"):
                self.result = tuple(int(x) for x in line.split()[1:])  # type: ignore
                continue
            if line.startswith("MARK"):
                self.mark = tuple(int(x) for x in line.split()[1:])  # type: ignore
                continue
            return int(line)
        return None

    def line(self, timeout: float) -> str:
        """The next line the server prints ("" when none came in time)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return ""
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("server exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss_kib(self) -> int:
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def sockets(self) -> int:
        n = 0
        for fd in os.listdir("/proc/%d/fd" % self.proc.pid):
            try:
                n += os.readlink("/proc/%d/fd/%s" % (self.proc.pid, fd)).startswith("socket:")
            except OSError:
                pass
        return n

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def connect_all(port: int, n: int) -> List[socket.socket]:
    """N non-blocking connects, in one burst."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        if n > PER_SOURCE:
            s.bind(("127.0.0.%d" % (2 + i // PER_SOURCE), 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def storm(server: Server, n: int, counted_by_fd: bool, polls: int) -> Dict[str, float]:
    """One run: connect N, wait for all accepted, read the poll RESULT."""
    time.sleep(1)  # let the server settle before RSS is read
    base_socks = server.sockets() if counted_by_fd else 0
    rss0, cpu0 = server.rss_kib(), server.cpu()
    start = time.monotonic()
    socks = connect_all(server.port, n)
    count = 0
    try:
        while time.monotonic() - start < DEADLINE:
            if counted_by_fd:
                count = server.sockets() - base_socks
                if count < n:
                    time.sleep(0.02)
            else:
                got = server.accepted(1.0)
                count = got if got is not None else count
            if count >= n:
                break
        took = time.monotonic() - start
        cpu = server.cpu() - cpu0
        row = {"accepted": count, "seconds": took, "cpu": cpu}
        if not counted_by_fd and count >= n and polls:
            deadline = time.monotonic() + 120
            while server.result is None and time.monotonic() < deadline:
                server.accepted(1.0)
        if server.result is not None:
            wall, cpu_poll, rss1 = server.result[:3]
            row.update(poll_wall_us=wall / 1e3, poll_cpu_us=cpu_poll / 1e3)
            if len(server.result) > 3:  # ours: RSS again after gc.collect()
                row["bytes_per_conn_gc"] = (server.result[3] - rss0) * 1024.0 / max(count, 1)
        else:
            time.sleep(0.5)
            rss1 = server.rss_kib()
        row["bytes_per_conn"] = (rss1 - rss0) * 1024.0 / max(count, 1)
        if server.mark is not None and count > server.mark[0]:
            # The second half of the burst alone: what one more connection
            # costs once the server is warm (PyPy's JIT has compiled the
            # accept path, its GC's nursery is in use).
            row["bytes_marginal"] = ((rss1 - server.mark[1]) * 1024.0
                                     / (count - server.mark[0]))
        return row
    finally:
        for s in socks:
            s.close()


def build_c() -> Dict[str, str]:
    """bench/bin/c_idle_server-{unpatched,patched}; their paths."""
    import _setup
    import mgpatch
    src = _setup.mongoose_dir()
    os.makedirs(BIN, exist_ok=True)
    patched = mgpatch.patched_dir(src, os.path.join(BIN, "mongoose-patched"))
    out = {}
    for name, mg_dir in (("unpatched", src), ("patched", patched)):
        exe = os.path.join(BIN, "c_idle_server-" + name)
        out[name] = exe
        sources = [os.path.join(BENCH, "c_idle_server.c"), os.path.join(mg_dir, "mongoose.c")]
        if os.path.exists(exe) and all(os.path.getmtime(exe) > os.path.getmtime(s)
                                       for s in sources):
            continue
        _setup.log("compiling bench/bin/c_idle_server-" + name)
        # The patched build gets the listen backlog Manager.listen uses.
        backlog = ["-DMG_SOCK_LISTEN_BACKLOG_SIZE=1024"] if name == "patched" else []
        _setup.run(["gcc"] + _setup.CFLAGS + _setup.MG_DEFINES + backlog
                   + ["-I", mg_dir, "-I", src, os.path.join(BENCH, "c_idle_server.c"),
                      os.path.join(mg_dir, "mongoose.c"), "-o", exe])
    return out


def uvicorn_python() -> Optional[str]:
    try:
        import servers_compare
        return servers_compare.peers_venv()
    except Exception as e:  # noqa: BLE001 - reported, the rest still runs
        print("uvicorn unavailable: %s" % e, file=sys.stderr)
        return None


def version(python: str) -> str:
    return subprocess.run([python, "-c", "import platform; print(platform.python_implementation(),"
                           " platform.python_version())"], capture_output=True,
                          text=True, cwd="/").stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--polls", type=int, default=200, help="timed zero-timeout polls")
    ap.add_argument("--python", action="append", default=[])
    ap.add_argument("--only", default="", help="comma-separated server names (prefix match)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.n + 100 > hard:
        sys.exit("-n %d needs a descriptor hard limit above %d (it is %d): see bench/README.md"
                 % (a.n, a.n + 100, hard))
    tmp = tempfile.mkdtemp(prefix="storm-")
    with open(os.path.join(tmp, "hello.py"), "w") as f:
        f.write(ASGI_APP)
    rows: List[Tuple[str, object]] = [("asyncio (%s)" % version(sys.executable),
                                       ("asyncio", [sys.executable, "-c", ASYNCIO]))]
    want = [x for x in a.only.split(",") if x]

    def wanted(name: str) -> bool:
        return not want or any(name.startswith(w) for w in want)

    if wanted("uvicorn"):
        uv = uvicorn_python()
        if uv:
            rows.append(("uvicorn (%s)" % version(uv), ("uvicorn", uv)))
    if wanted("c-unpatched") or wanted("c-patched"):
        exes = build_c()
        for name in ("unpatched", "patched"):
            rows.append(("c-%s" % name, [exes[name], str(a.n), str(a.polls)]))
    for py in [os.path.abspath(p) for p in a.python] or [sys.executable]:
        ver = version(py)
        for variant in ("handles", "all"):
            rows.append(("ours-%s (%s)" % (variant, ver),
                         [py, "-c", OURS, str(a.n), str(a.polls), variant]))
    rows = [r for r in rows if wanted(r[0])]
    print("%d simultaneous connects, descriptor limit %d, %d runs, %s"
          % (a.n, hard, a.repeat, " ".join(os.uname()[2:3])))
    print("%-30s %9s %15s %9s %11s %11s %11s %17s %17s" % (
        "server", "accepted", "seconds", "cpu s", "B/conn", "B/conn gc", "B 2nd half",
        "poll wall us", "poll cpu us"))
    for name, spec in rows:
        runs = []
        for _ in range(a.repeat):
            if isinstance(spec, tuple) and spec[0] == "asyncio":
                srv = Server(spec[1], "/")
                runs.append(storm(srv, a.n, False, 0))
            elif isinstance(spec, tuple):
                port = free_port()
                srv = Server([spec[1], "-m", "uvicorn", "--port", str(port), "--log-level",
                              "warning", "--no-access-log", "hello:app"], tmp, port)
                runs.append(storm(srv, a.n, True, 0))
            else:
                srv = Server(spec, "/")
                runs.append(storm(srv, a.n, False, a.polls))
            srv.stop()
        print("%-30s %9s %15s %9s %11s %11s %11s %17s %17s" % (
            name, fmt(runs, "accepted", "%d"), fmt(runs, "seconds", "%.2f"),
            fmt(runs, "cpu", "%.2f"), fmt(runs, "bytes_per_conn", "%.0f"),
            fmt(runs, "bytes_per_conn_gc", "%.0f"), fmt(runs, "bytes_marginal", "%.0f"),
            fmt(runs, "poll_wall_us", "%.0f"), fmt(runs, "poll_cpu_us", "%.0f")), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def fmt(runs: List[Dict[str, float]], key: str, f: str) -> str:
    """Median (min-max) of one field over the runs; '-' when absent."""
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return "-"
    med = f % statistics.median(vals)
    if len(vals) == 1 or key == "accepted":
        return med
    return "%s (%s-%s)" % (med, f % min(vals), f % max(vals))


if __name__ == "__main__":
    main()
