#!/usr/bin/env python3
"""Python web servers on one core: ours against uvicorn, granian, gunicorn,
waitress, websockets and picows, in one run.

    python3 bench/servers_compare.py            # full: 3 rounds of 5 s
    python3 bench/servers_compare.py --quick    # 1 round of 2 s
    python3 bench/run.py --only servers         # the same, as a section of run.py

Apps (bench/servers/wsgi_apps.py, asgi_apps.py): raw WSGI, Flask, raw ASGI,
FastAPI (an ``async def`` endpoint, and a plain ``def`` one that runs in
anyio's thread pool), all answering ``GET /`` with ``ok``; WebSocket echo of 32-byte and
16 KiB messages (bench/servers/ws_echo.py on our Manager, the ASGI
``ws_echo`` app on our ASGI server, ws_peers.py for websockets and picows).
Every server runs pinned to core 0 as one process with one worker; the load
generators (wrk -t1 -c50, bench/bin/ws_load with 50 connections) run on
core 1.  Peers come from PyPI into bench/.venv-peers (CPython); ours run from
this checkout on bench/.venv-cpython and bench/.venv-pypy, which get Flask
(and FastAPI on CPython) for the framework rows.  Our PyPy servers run with
PYPY_GC_NURSERY=16MB, as docs/deployment.md asks of a program serving on
PyPy (``python -m cymongoose`` sets it itself).

The p99 that a goal compares is measured again at the same offered load
for both servers (``equal_load``: ``bin/http_rate``, or ``bin/ws_rate``
for WebSocket echo, open loop, at half the slower one's closed-loop rate),
as a closed loop runs each server at its own rate; the goals of the
pipelined WebSocket test keep ws_load's closed-loop p99 (ws_rate keeps one
message in flight per connection).

Before anything counts, each server is warmed up until two consecutive
warm-up runs agree within 3% (at most 8 runs: PyPy's JIT needs several);
then rounds rotate the server order.  Figures: median req/s (or msg/s) over
rounds with the spread (half the range, relative), p99, server CPU per
request: utime + stime of the server's whole process tree from /proc, read
around each load run, divided by the requests the load generator counted,
and the load generator's own share of its core.  The WebSocket test also
runs bench/c_server (the same Mongoose in C): with one core for ws_load,
that is as fast as any server on this Mongoose can be shown to be, and the
goals table gives its ratio to the peer.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _load  # noqa: E402
import _setup  # noqa: E402

NURSERY_VAR, NURSERY = "PYPY_GC_NURSERY", "16MB"
from _load import BenchError  # noqa: E402
from _setup import BENCH, BIN, ROOT  # noqa: E402

SERVERS_DIR = os.path.join(BENCH, "servers")
PEERS = ["uvicorn[standard]", "granian", "gunicorn", "waitress", "flask", "fastapi",
         "websockets", "picows", "uvloop"]
PEER_DISTS = ["uvicorn", "httptools", "uvloop", "granian", "gunicorn", "waitress", "flask",
              "fastapi", "websockets", "picows"]

#: The WebSocket tests' reference row: the rate the load generator's one
#: core lets a server reach that is this Mongoose without any Python.
C_MONGOOSE = "C Mongoose (ceiling)"

# (test, row label, server key, options shown in the table)
Spec = Tuple[str, str, List[str], str]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peers_venv() -> str:
    """bench/.venv-peers (CPython) with every peer server from PyPI; its python."""
    return _setup.ensure_venv(".venv-peers", sys.executable if "pypy" not in sys.executable
                              else "python3", PEERS,
                              "uvicorn, httptools, uvloop, granian, gunicorn, waitress, "
                              "flask, fastapi, websockets, picows")


def ensure_frameworks(python: str, pypy: bool) -> bool:
    """Flask (and FastAPI and uvloop, which our ASGI server then uses as
    uvicorn does, on CPython) in one of our venvs; False if it fails."""
    packages = ["flask"] if pypy else ["flask", "fastapi", "uvloop"]
    check = ", ".join(packages)
    try:
        _setup.ensure_venv(os.path.basename(os.path.dirname(os.path.dirname(python))),
                           python, packages, check)
    except _setup.SetupError as exc:
        log("frameworks unavailable for %s: %s" % (python, str(exc).splitlines()[0]))
        return False
    return True


def versions(python: str) -> Dict[str, str]:
    code = ("import importlib.metadata as m\n"
            "for d in %r:\n"
            "    try: print(d, m.version(d))\n"
            "    except Exception: pass\n" % PEER_DISTS)
    out = subprocess.run([python, "-c", code], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def specs(cpy: str, pypy: Optional[str], peers: str, only: List[str]) -> List[Spec]:
    """Every (test, label, argv with PORT, options) of the comparison."""
    pb = os.path.join(os.path.dirname(peers), "")
    out: List[Spec] = []

    def ours(test: str, label: str, argv: List[str], opts: str) -> None:
        out.append((test, label, argv, opts))

    mine = [("CPython", cpy)] + ([("PyPy", pypy)] if pypy else [])
    if "wsgi" in only:
        for app, test in (("raw", "raw WSGI"), ("flask", "Flask")):
            for name, py in mine:
                ours(test, "ours %s, inline" % name, [py, "wsgi_ours.py", app, "0", "PORT"],
                     "workers=0 (app on the poll thread)")
                ours(test, "ours %s, 8 threads" % name, [py, "wsgi_ours.py", app, "8", "PORT"],
                     "workers=8")
            out.append((test, "granian", [pb + "granian", "--interface", "wsgi", "--workers",
                                          "1", "--no-ws", "--host", "127.0.0.1", "--port",
                                          "PORT", "--log-level", "warning",
                                          "wsgi_apps:" + app],
                        "--interface wsgi --workers 1 (default blocking threads)"))
            out.append((test, "gunicorn gthread",
                        [pb + "gunicorn", "-k", "gthread", "-w", "1", "--threads", "8", "-b",
                         "127.0.0.1:PORT", "--log-level", "warning", "wsgi_apps:" + app],
                        "-k gthread -w 1 --threads 8"))
            out.append((test, "waitress", [pb + "waitress-serve", "--listen=127.0.0.1:PORT",
                                           "wsgi_apps:" + app], "defaults (4 threads)"))
    if "asgi" in only:
        for app, test in (("raw", "raw ASGI"), ("fastapi", "FastAPI"),
                          ("fastapi_sync", "FastAPI, def endpoint")):
            for name, py in mine:
                if app.startswith("fastapi") and name == "PyPy":
                    continue
                ours(test, "ours %s" % name, [py, "-m", "cymongoose", "--log-level", "WARNING",
                                              "asgi", "asgi_apps:" + app,
                                              "--listen", "http://127.0.0.1:PORT"],
                     "python -m cymongoose --log-level WARNING asgi (no access log, "
                     "uvloop when installed)")
            out.append((test, "uvicorn", [pb + "uvicorn", "--loop", "uvloop", "--http",
                                          "httptools", "--no-access-log", "--log-level",
                                          "warning", "--host", "127.0.0.1", "--port", "PORT",
                                          "asgi_apps:" + app],
                        "--loop uvloop --http httptools --no-access-log"))
            out.append((test, "granian", [pb + "granian", "--interface", "asgi", "--workers",
                                          "1", "--loop", "uvloop", "--host", "127.0.0.1",
                                          "--port", "PORT", "--log-level", "warning",
                                          "asgi_apps:" + app],
                        "--interface asgi --workers 1 --loop uvloop"))
    if "ws" in only:
        for name, py in mine:
            ours("ws", "ours %s, Manager @handles" % name,
                 [py, "ws_echo.py", "declared", "PORT"], "servers/ws_echo.py declared")
            ours("ws", "ours %s, ASGI" % name,
                 [py, "-m", "cymongoose", "--log-level", "WARNING", "asgi", "asgi_apps:ws_echo", "--listen",
                  "http://127.0.0.1:PORT"], "python -m cymongoose asgi")
        for peer in ("picows", "websockets"):
            out.append(("ws", peer, [peers, "ws_peers.py", peer, "PORT"], "uvloop"))
        out.append(("ws", C_MONGOOSE, [os.path.join(BIN, "c_server"), "ws", "PORT"],
                    "bench/c_server.c: the vendored Mongoose in C, no Python"))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants (gunicorn and granian fork)."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += _load.cpu_seconds(p)
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


class Proc:
    """A server process pinned to core 0, ready once its port answers."""

    def __init__(self, label: str, argv: List[str], port: int, env: Dict[str, str],
                 log_path: str, pin: bool) -> None:
        self.label = label
        self.port = port
        self.argv = [a.replace("PORT", str(port)) for a in argv]
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen(_load.pinned(_load.SERVER_CORE, self.argv, pin),
                                     cwd=SERVERS_DIR, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError("%s exited (code %s); see %s"
                                 % (self.label, self.proc.returncode, self._log.name))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("%s: port %d not open within %.0f s"
                                     % (self.label, self.port, timeout)) from None
                time.sleep(0.1)  # polling a port another process opens

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def load_once(test: str, server: Proc, seconds: float, pin: bool) -> dict:
    """One load run (wrk, or ws_load for the ``ws ...`` tests); ``server``
    offers ``cpu()`` and ``label`` like ``_load.Server``."""
    if test.startswith("ws"):
        size, depth = WS_LOADS[test]
        return _load.run_ws(server, os.path.join(BIN, "ws_load"), server.port,  # type: ignore
                            50, seconds, pin, size, depth)
    return _load.run_wrk(server, server.port, 50, seconds, pin)  # type: ignore[arg-type]


#: Messages in flight on each connection in the pipelined WebSocket test.
#: With one, every server pays a recv and a send per message, which is most
#: of the cost (the kernel's), and all of them end within ~15% of each
#: other; with several, what a server does per message shows, including
#: whether it writes the echoes of one read together.
PIPELINED = 8
WS_PIPELINED = " 32 B, %d in flight" % PIPELINED
#: The WebSocket tests: message size and messages in flight per connection.
WS_LOADS = {"ws 32 B": (32, 1), "ws 16 KiB": (16384, 1), "ws" + WS_PIPELINED: (32, PIPELINED)}

#: Open-loop rounds of a goal: (offered req/s, our runs, the peer's runs).
Equal = Tuple[float, List[dict], List[dict]]

#: The offered load of the equal-load runs, as a share of the slower
#: server's closed-loop rate.  At 80% this shared two-core machine's stalls
#: decided the p99 of every server (a few ms of stall leave a queue that
#: takes long to drain so near capacity: 1.6 to 94 ms for one server in
#: three rounds); at half, the servers' own latency shows.
EQUAL_SHARE = 0.5


def equal_load(test: str, ready: Dict[str, Proc], runs: Dict[Tuple[str, str], List[dict]],
               args: argparse.Namespace, pin: bool) -> Dict[str, Equal]:
    """The goals of ``test`` measured again at the same offered load for
    both servers (``bin/http_rate``, or ``bin/ws_rate`` for a WebSocket
    test with one message in flight; open loop, 50 connections).

    A closed loop (wrk, ws_load) cannot compare latencies: each connection
    sends its next request only once answered, so each server runs at its
    own rate and its mean latency is the connections over that rate.  Here
    both servers get ``EQUAL_SHARE`` of the slower one's closed-loop rate,
    and latency counts from the time each request fell due.
    """
    out: Dict[str, Equal] = {}
    tool, ws_size = "http_rate", 0
    if test in WS_LOADS:
        ws_size, depth = WS_LOADS[test]
        if depth != 1:
            return out  # ws_rate keeps one message in flight
        tool = "ws_rate"
    for what, ours, peer, goal_test, _ in GOALS:
        if goal_test != test or ours not in ready or peer not in ready:
            continue
        slower = min(_median(runs[(test, ours)], "rate"), _median(runs[(test, peer)], "rate"))
        rate = max(1000.0, round(slower * EQUAL_SHARE, -3))
        got: Dict[str, List[dict]] = {ours: [], peer: []}
        try:
            for r in range(args.rounds):
                for label in ((ours, peer) if r % 2 == 0 else (peer, ours)):
                    res = _load.run_rate(ready[label],  # type: ignore[arg-type]
                                         os.path.join(BIN, tool), ready[label].port,
                                         50, rate, args.duration, pin, ws_size)
                    got[label].append(res)
                    log("[equal %d/%d] %-14s %-28s %9.0f /s offered  p99 %7.3f ms%s"
                        % (r + 1, args.rounds, test, label, rate, res["p99"],
                           "  (%d unanswered)" % res["missing"] if res["missing"] else ""))
        except BenchError as exc:
            log("equal load skipped for %s: %s" % (what, exc))
            continue
        out[what] = (rate, got[ours], got[peer])
    return out


def warm(test: str, server: Proc, seconds: float, pin: bool, max_runs: int = 8) -> int:
    """Load runs until two in a row agree within 3%; how many it took."""
    last = None
    for i in range(1, max_runs + 1):
        rate = load_once(test, server, seconds, pin)["rate"]
        if last is not None and abs(rate - last) <= 0.03 * max(rate, last):
            return i
        last = rate
    return max_runs


def run(args: argparse.Namespace, cpy: str, pypy: Optional[str], log_path: str
        ) -> Tuple[List[str], Dict[Tuple[str, str], List[dict]]]:
    """Measure every server; returns (markdown lines, raw runs)."""
    pin = not args.no_pin
    peers = peers_venv()
    frameworks = {cpy: ensure_frameworks(cpy, False)}
    if pypy:
        frameworks[pypy] = ensure_frameworks(pypy, True)
    only = args.servers.split(",")
    all_specs = specs(cpy, pypy, peers, only)
    env_ours = dict(os.environ, PYTHONPATH=args.tree)
    # What docs/deployment.md asks of a program that serves on PyPy, and
    # what `python -m cymongoose` does by itself: PyPy's own choice follows
    # /proc/cpuinfo (1 MB on an AMD EPYC, 240 MB on a VM that reports 480
    # MiB of L3).  CPython ignores it.
    env_ours[NURSERY_VAR] = NURSERY
    env_peers = dict(os.environ)
    env_peers.pop("PYTHONPATH", None)
    runs: Dict[Tuple[str, str], List[dict]] = {}
    equal: Dict[str, Equal] = {}
    options: Dict[Tuple[str, str], str] = {}
    warmups: Dict[Tuple[str, str], int] = {}
    tests = []
    for test, _, _, _ in all_specs:
        if test not in tests:
            tests.append(test)
    for test in tests:
        group = [s for s in all_specs if s[0] == test]
        loads = list(WS_LOADS) if test == "ws" else [test]
        procs: List[Tuple[str, Proc]] = []
        try:
            for _, label, argv, opts in group:
                if test in ("Flask", "FastAPI", "FastAPI, def endpoint") \
                        and argv[0] in frameworks \
                        and not frameworks[argv[0]]:
                    continue
                mine = argv[0] in (cpy, pypy)
                p = Proc(label, argv, _load.free_port(), env_ours if mine else env_peers,
                         log_path, pin)
                procs.append((label, p))
                options[(test, label)] = opts + ("" if mine else "")
            ready = []
            for label, p in procs:
                try:
                    p.wait_ready()
                    ready.append((label, p))
                except BenchError as exc:
                    log("skipped: %s" % exc)
            for load in loads:
                for label, p in ready:
                    warmups[(load, label)] = warm(load, p, args.warmup, pin)
                for r in range(args.rounds):
                    order = ready[r % len(ready):] + ready[:r % len(ready)]
                    for label, p in order:
                        res = load_once(load, p, args.duration, pin)
                        runs.setdefault((load, label), []).append(res)
                        log("[round %d/%d] %-14s %-28s %9.0f /s  p99 %7.3f ms  %6.2f us cpu"
                            % (r + 1, args.rounds, load, label, res["rate"], res["p99"],
                               res["cpu_us"]))
            for load in loads:
                equal.update(equal_load(load, dict(ready), runs, args, pin))
        finally:
            for _, p in procs:
                p.stop()
    env_shown = {cpy: "PYTHONPATH=../.. ",
                 pypy: "PYTHONPATH=../.. %s=%s " % (NURSERY_VAR, NURSERY)}
    commands = ["cd bench/servers"] + [
        env_shown.get(argv[0], "")
        + " ".join(_load.pinned(_load.SERVER_CORE, [rel(a) for a in argv], pin))
        for _, _, argv, _ in all_specs]
    commands += ["taskset -c 1 wrk -t1 -c50 -d%gs --latency http://127.0.0.1:PORT/" % args.duration,
                 "taskset -c 1 ../bin/http_rate http://127.0.0.1:PORT/ 50 RATE %g" % args.duration,
                 "taskset -c 1 ../bin/ws_load ws://127.0.0.1:PORT/ 50 %g {32,16384}"
                 % args.duration,
                 "taskset -c 1 ../bin/ws_load ws://127.0.0.1:PORT/ 50 %g 32 %d"
                 % (args.duration, PIPELINED),
                 "taskset -c 1 ../bin/ws_rate ws://127.0.0.1:PORT/ 50 RATE %g 32"
                 % args.duration]
    return (table(runs, options, warmups, versions(peers)) + ["", "Goals:", ""]
            + goals(runs, equal) + ["", "```"] + commands + ["```"]), runs


def rel(path: str) -> str:
    """A path as the README shows it (bench/ programs relative to bench/servers)."""
    if os.path.isabs(path) and path.startswith(BENCH + os.sep):
        return os.path.relpath(path, SERVERS_DIR)
    return path


#: (what, our row, peer row, test, target ratio of req/s)
GOALS = [
    ("raw WSGI, CPython inline, x granian", "ours CPython, inline", "granian", "raw WSGI", 0.6),
    ("raw WSGI, CPython 8 threads, x granian", "ours CPython, 8 threads", "granian",
     "raw WSGI", 0.6),
    ("raw WSGI, CPython inline, x gunicorn", "ours CPython, inline", "gunicorn gthread",
     "raw WSGI", 4.0),
    ("raw WSGI, CPython 8 threads, x gunicorn", "ours CPython, 8 threads", "gunicorn gthread",
     "raw WSGI", 4.0),
    ("raw WSGI, PyPy inline, x granian", "ours PyPy, inline", "granian", "raw WSGI", 1.0),
    ("raw WSGI, PyPy 8 threads, x granian", "ours PyPy, 8 threads", "granian", "raw WSGI", 1.0),
    ("Flask, CPython inline, x gunicorn", "ours CPython, inline", "gunicorn gthread", "Flask",
     2.5),
    ("Flask, CPython 8 threads, x gunicorn", "ours CPython, 8 threads", "gunicorn gthread",
     "Flask", 2.5),
    ("raw ASGI, CPython, x uvicorn", "ours CPython", "uvicorn", "raw ASGI", 1.2),
    ("raw ASGI, PyPy, x uvicorn", "ours PyPy", "uvicorn", "raw ASGI", 2.0),
    ("FastAPI, CPython, x uvicorn", "ours CPython", "uvicorn", "FastAPI", 1.1),
    ("WS echo 32 B, CPython Manager, x picows", "ours CPython, Manager @handles", "picows",
     "ws 32 B", 1.0),
    ("WS echo 32 B, PyPy Manager, x picows", "ours PyPy, Manager @handles", "picows",
     "ws 32 B", 1.2),
    ("WS echo 32 B, %d in flight, CPython Manager, x picows" % PIPELINED,
     "ours CPython, Manager @handles", "picows", "ws" + WS_PIPELINED, 1.0),
    ("WS echo 32 B, %d in flight, PyPy Manager, x picows" % PIPELINED,
     "ours PyPy, Manager @handles", "picows", "ws" + WS_PIPELINED, 1.2),
]


def goals(runs: Dict[Tuple[str, str], List[dict]], equal: Dict[str, Equal]) -> List[str]:
    """The issue's goals: req/s ratio (and CPU and p99 ratios) to the named
    peer.  The p99 that decides is the one at the same offered load where
    it was measured (all but the pipelined WebSocket test), the closed
    loop's otherwise.  Where the C
    Mongoose server ran the same test, its ratio to the peer is shown too:
    a goal above it cannot be shown with this load generator."""
    lines = ["| goal | target | req/s ratio | CPU/req ratio (peer / ours) "
             "| p99 ours / peer, closed loop | p99 ours / peer, same load | C Mongoose x peer | met |",
             "|---|---|---|---|---|---|---|---|"]
    for what, ours, peer, test, target in GOALS:
        a, b = runs.get((test, ours)), runs.get((test, peer))
        if not a or not b:
            lines.append("| %s | >= %.1f | - | - | - | - | - | not measured |"
                         % (what, target))
            continue
        c = runs.get((test, C_MONGOOSE))
        c_ratio = _median(c, "rate") / _median(b, "rate") if c else None
        ratio = _median(a, "rate") / _median(b, "rate")
        cpu = _median(b, "cpu_us") / _median(a, "cpu_us")
        p99 = wrk_p99 = _median(a, "p99") / _median(b, "p99")
        same = "-"
        if what in equal:
            rate, mine, theirs = equal[what]
            p99 = _median(mine, "p99") / _median(theirs, "p99")
            same = "%.2f at %s/s" % (p99, format(int(rate), ","))
        met = "yes" if ratio >= target and p99 <= 1.0 else "**no**"
        if ratio < target and c_ratio is not None and c_ratio < target:
            met += " (C Mongoose is below the target too)"
        lines.append("| %s | >= %.1f | %.2f | %.2f | %.2f | %s | %s | %s |"
                     % (what, target, ratio, cpu, wrk_p99, same,
                        "-" if c_ratio is None else "%.2f" % c_ratio, met))
    if not equal:
        return lines
    lines += ["", "At the same offered load (`bin/http_rate`, or `bin/ws_rate` for WebSocket "
              "echo, open loop, %d%% of the slower server's closed-loop rate; p50 / p99 / "
              "p99.9 ms, medians of the rounds):"
              % (EQUAL_SHARE * 100), "",
              "| goal | offered req/s | ours | peer | unanswered (ours, peer) |",
              "|---|---|---|---|---|"]
    for what, (rate, mine, theirs) in equal.items():
        lines.append("| %s | %s | %s | %s | %d, %d |" % (
            what, format(int(rate), ","), _latencies(mine), _latencies(theirs),
            sum(r["missing"] for r in mine), sum(r["missing"] for r in theirs)))
    return lines


def _latencies(runs: List[dict]) -> str:
    return " / ".join("%.2f" % _median(runs, k) for k in ("p50", "p99", "p999"))


def _median(runs: List[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(runs: Dict[Tuple[str, str], List[dict]], options: Dict[Tuple[str, str], str],
          warmups: Dict[Tuple[str, str], int], peer_versions: Dict[str, str]) -> List[str]:
    lines = ["| test | server | req/s | spread | p99 ms | CPU us/req | load generator's core "
             "| warm-up runs | options |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (load, label), rs in runs.items():
        rates = [r["rate"] for r in rs]
        med = statistics.median(rates)
        spread = (max(rates) - min(rates)) / 2 / med * 100 if med else 0.0
        test = load.split(" 32 B")[0].split(" 16 KiB")[0]
        errors = sum(r.get("errors", 0) for r in rs)
        lines.append("| %s | %s | %s | ±%.0f%% | %.2f | %.2f | %.0f%% | %d | %s%s |"
                     % (load, label, format(int(med), ","), spread, _median(rs, "p99"),
                        _median(rs, "cpu_us"), 100 * _median(rs, "load_share"),
                        warmups.get((load, label), 0),
                        options.get((test, label), ""),
                        "; %d errors" % errors if errors else ""))
    lines += ["", "Peers: " + ", ".join("%s %s" % kv for kv in sorted(peer_versions.items()))
              + " (bench/.venv-peers, CPython)."]
    return lines


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round of 2 s")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--warmup", type=float, help="seconds per warm-up run (default 2)")
    p.add_argument("--servers", default="wsgi,asgi,ws",
                   help="which comparisons (default wsgi,asgi,ws)")
    p.add_argument("--no-pypy", action="store_true")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--tree", default=ROOT)
    args = p.parse_args(argv)
    fill(args)
    return args


def fill(args: argparse.Namespace) -> None:
    """Defaults that depend on --quick (shared with run.py)."""
    quick = getattr(args, "quick", False)
    if getattr(args, "rounds", None) is None:
        args.rounds = 1 if quick else 3
    if getattr(args, "duration", None) is None:
        args.duration = 2 if quick else 5
    if getattr(args, "warmup", None) is None:
        args.warmup = 1 if quick else 2
    if getattr(args, "servers", None) is None:
        args.servers = "wsgi,asgi,ws"


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    _setup.build_c(_setup.mongoose_dir())
    cpy = _setup.our_interpreter(None, ".venv-cpython", "python3")
    pypy = None if args.no_pypy else _setup.our_interpreter(None, ".venv-pypy", "pypy3")
    for py in filter(None, (cpy, pypy)):
        _setup.build_ours(py, args.tree)
    os.makedirs(os.path.join(BENCH, "out"), exist_ok=True)
    log_path = os.path.join(BENCH, "out", "servers-compare.log")
    lines, _ = run(args, cpy, pypy, log_path)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, _setup.SetupError) as exc:
        sys.exit("bench/servers_compare.py: %s" % exc)
