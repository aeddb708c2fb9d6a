#!/usr/bin/env python3
"""Two or more HTTP servers compared in one run: CPU per request, req/s, p99.

    python3 bench/pair.py [--rounds N] [--secs S] [--ws SIZE] [--rate R] [--browser] NAME=COMMAND ...

Each COMMAND is a server command line with ``{port}`` where its port goes;
it runs from bench/servers pinned to core 0 (as bench/servers_compare.py
runs its servers).  All servers are started once and warmed up, then
``wrk -t1 -c50`` on core 1 loads each in turn, for ``--rounds`` rounds.
CPU per request is the utime + stime of the server's process tree from
/proc across a load run, divided by the requests wrk counted.  Used for the
step-by-step figures in bench/README.md, where one change is measured next
to a peer on a busy machine: both share every round's conditions, so their
ratio moves less than either figure.  Example (from bench/):

    python3 pair.py \\
      ours="../.venv-cpython/bin/python -m cymongoose --log-level WARNING asgi \\
            asgi_apps:raw --listen http://127.0.0.1:{port}" \\
      uvicorn="../.venv-peers/bin/uvicorn --loop uvloop --http httptools \\
               --no-access-log --log-level warning --port {port} asgi_apps:raw"

(commands run in bench/servers, so relative paths start there).  With
``--ws SIZE`` the servers are WebSocket echo servers and the load is
``bin/ws_load`` (50 connections, SIZE-byte messages) instead of wrk; the
figures are then per message.  With ``--rate R`` the load is
``bin/http_rate``: R requests per second whatever the answers (open loop,
50 connections), and the latency figures (p50, p99, p99.9) count from the
time each request fell due: the latency of servers of different speeds
compared at the same offered load, which wrk's closed loop cannot do.
``--ws SIZE --rate R`` does the same for WebSocket echo servers with
``bin/ws_rate``: R messages per second, each sent on a connection with
none in flight.  With ``--browser`` wrk sends the 15 header fields of a
browser's page request (``count.BROWSER_FIELDS``) instead of Host alone.
"""

import argparse
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Tuple

from count import BROWSER_FIELDS

SERVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (granian and gunicorn fork)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: Dict[int, List[int]] = {}
    stats: Dict[int, List[str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(name)] = fields
            children.setdefault(int(fields[1]), []).append(int(name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo.extend(children.get(p, []))
    return total


def wait_port(port: int, proc: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit("a server exited (status %s)" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("port %d not open within 60 s" % port)
            time.sleep(0.1)  # polling a port another process opens


def wrk(port: int, secs: int, browser: bool = False) -> Tuple[int, float, str]:
    fields = [a for f in BROWSER_FIELDS for a in ("-H", f)] if browser else []
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d%ds" % secs,
                          "--latency"] + fields + ["http://127.0.0.1:%d/" % port],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    count = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r" 99%\s+(\S+)", out)
    if not (count and rate and p99):
        sys.exit("unexpected wrk output:\n" + out)
    return int(count.group(1)), float(rate.group(1)), p99.group(1)


def ws_load(port: int, secs: int, size: int) -> Tuple[int, float, str]:
    binary = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "ws_load")
    out = subprocess.run(["taskset", "-c", "1", binary, "ws://127.0.0.1:%d/" % port, "50",
                          str(secs), str(size)],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    m = re.search(r"RESULT msgs=(\d+) secs=\S+ rate=([\d.]+) p50_us=\S+ p99_us=([\d.]+)", out)
    if not m:
        sys.exit("unexpected ws_load output:\n" + out)
    return int(m.group(1)), float(m.group(2)), "%.2fms" % (float(m.group(3)) / 1000)


def open_loop(port: int, secs: int, rate: float, ws_size: int = 0) -> Tuple[int, float, str]:
    """One run of bin/http_rate, or of bin/ws_rate with ``ws_size``."""
    tool, scheme = ("ws_rate", "ws") if ws_size else ("http_rate", "http")
    binary = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", tool)
    out = subprocess.run(["taskset", "-c", "1", binary, "%s://127.0.0.1:%d/" % (scheme, port),
                          "50", "%g" % rate, str(secs)] + ([str(ws_size)] if ws_size else []),
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    m = re.search(r"RESULT due=(\d+) done=(\d+) all=(\d+) secs=\S+ rate=([\d.]+) "
                  r"p50_us=([\d.]+) p99_us=([\d.]+) p999_us=([\d.]+) errors=(\d+)", out)
    if not m or m.group(8) != "0":
        sys.exit("%s failed:\n%s" % (tool, out))
    lat = "%.2f/%.2f/%.2fms" % tuple(float(m.group(i)) / 1000 for i in (5, 6, 7))
    if m.group(1) != m.group(2):
        lat += "(%s of %s answered)" % (m.group(2), m.group(1))
    # every answer, warm-up included: the CPU window covers the whole run
    return int(m.group(3)), float(m.group(4)), lat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=4)
    p.add_argument("--ws", type=int, metavar="SIZE",
                   help="WebSocket echo servers, loaded by bin/ws_load with SIZE-byte messages")
    p.add_argument("--rate", type=float, metavar="R",
                   help="open-loop load of R requests/s (bin/http_rate, or bin/ws_rate with "
                        "--ws); latency p50/p99/p99.9")
    p.add_argument("--browser", action="store_true",
                   help="wrk sends the header fields of a browser's page request "
                        "(count.BROWSER_FIELDS), not Host alone")
    p.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    args = p.parse_args()
    if args.rate:
        load = lambda port, secs: open_loop(port, secs, args.rate, args.ws or 0)  # noqa: E731
    elif args.ws:
        load = lambda port, secs: ws_load(port, secs, args.ws)  # noqa: E731
    else:
        load = lambda port, secs: wrk(port, secs, args.browser)  # noqa: E731
    procs = []
    try:
        for spec in args.servers:
            name, _, command = spec.partition("=")
            port = free_port()
            argv = ["taskset", "-c", "0"] + shlex.split(command.format(port=port))
            procs.append((name, port, subprocess.Popen(argv, cwd=SERVERS,
                                                       stdout=subprocess.DEVNULL,
                                                       stderr=subprocess.DEVNULL)))
        for _, port, proc in procs:
            wait_port(port, proc)
            load(port, 2)  # warm-up (PyPy's JIT)
        runs: Dict[str, List[Tuple[float, float, str]]] = {name: [] for name, _, _ in procs}
        for _ in range(args.rounds):
            for name, port, proc in procs:
                before = tree_cpu(proc.pid)
                count, rate, p99 = load(port, args.secs)
                runs[name].append(((tree_cpu(proc.pid) - before) / count * 1e6, rate, p99))
        for name, _, _ in procs:
            us = [r[0] for r in runs[name]]
            print("%-14s CPU us/req %.2f (%.2f-%.2f)  req/s %.0f  %s %s"
                  % (name, statistics.median(us), min(us), max(us),
                     statistics.median(r[1] for r in runs[name]),
                     "p50/p99/p99.9" if args.rate else "p99",
                     " ".join(r[2] for r in runs[name])))
    finally:
        for _, _, proc in procs:
            proc.send_signal(2)
        for _, _, proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
