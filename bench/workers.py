"""Requests per second and CPU per request for 1 and 2 worker processes.

    python3 bench/workers.py [--duration 5] [--rounds 3] [--python PY ...]

Each server is ``cymongoose.supervisor.Supervisor`` running N workers of the
``declared`` hello handler (``conn.reply(200, b"ok")``) on one shared socket.
``wrk -t1 -c{50,200} -dDs`` loads it.  CPU time is read from /proc for the
master and every worker (utime + stime) before and after each run, and for
wrk from ``RUSAGE_CHILDREN``.  Nothing is pinned: with 2 workers on a 2-core
machine the workers and wrk share both cores, which is the point (see
bench/README.md, "Workers").  Prints a table; medians over the rounds.
"""

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")

SERVER = textwrap.dedent('''
    import sys
    import cymongoose as cm
    from cymongoose.supervisor import Supervisor, bind, notify_ready

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def hello(conn, ev, data):
        conn.reply(200, b"ok")

    def worker(socks):
        mgr = cm.Manager(hello)
        mgr.listen_fd(socks[0].fileno(), http=True)
        notify_ready()
        mgr.run()
        mgr.close()

    sock = bind("127.0.0.1", 0)
    sys.exit(Supervisor(worker, [sock], workers=int(sys.argv[1])).run(
        lambda: print("PORT %d" % sock.getsockname()[1], flush=True)))
''')


def cpu_of(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(master: int) -> float:
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        pids = [master] + [int(p) for p in f.read().split()]
    return sum(cpu_of(p) for p in pids)


def children(master: int) -> List[int]:
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        return [int(p) for p in f.read().split()]


def one_run(python: str, workers: int, conns: int, duration: int) -> Tuple[float, float, float]:
    """(requests/s, server CPU µs per request, wrk CPU µs per request)."""
    # The interpreter's installed cymongoose (the worktree venvs install it).
    proc = subprocess.Popen([python, "-c", SERVER, str(workers)], stdout=subprocess.PIPE,
                            text=True, cwd="/")
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = int(line.split()[1])
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        url = "http://127.0.0.1:%d/" % port
        subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d2s", url], capture_output=True)  # warm-up (PyPy JIT)
        before = tree_cpu(proc.pid)
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration, url],
                             capture_output=True, text=True).stdout
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = tree_cpu(proc.pid) - before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    found = re.search(r"(\d+) requests in ([\d.]+)s", out)
    if not found or "Socket errors" in out or "Non-2xx" in out:
        raise RuntimeError("wrk failed:\n" + out)
    requests, secs = int(found.group(1)), float(found.group(2))
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    return requests / secs, used / requests * 1e6, wrk_cpu / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", action="append",
                        help="interpreters to measure (default: the worktree's venvs)")
    args = parser.parse_args()
    pythons = args.python or [p for p in (os.path.join(ROOT, ".venv-cpython/bin/python"),
                                          os.path.join(ROOT, ".venv-pypy/bin/python"))
                              if os.path.exists(p)]
    print("# %s; %d rounds of %d s; %s" % (" ".join(sys.argv), args.rounds, args.duration,
                                            os.uname().nodename))
    print("| interpreter | workers | c | req/s | server CPU µs/req | req per server CPU-s "
          "| wrk CPU µs/req | spread req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for python in pythons:
        name = subprocess.run([python, "-c", "import platform; print("
                               "platform.python_implementation(), platform.python_version())"],
                              capture_output=True, text=True).stdout.strip()
        for workers in (1, 2):
            for conns in (50, 200):
                runs = [one_run(python, workers, conns, args.duration) for _ in range(args.rounds)]
                rps = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                wrk = statistics.median(r[2] for r in runs)
                spread = "%.0f-%.0f" % (min(r[0] for r in runs), max(r[0] for r in runs))
                print("| %s | %d | %d | %.0f | %.1f | %.0f | %.1f | %s |" % (
                    name, workers, conns, rps, cpu, 1e6 / cpu, wrk, spread), flush=True)


if __name__ == "__main__":
    main()
