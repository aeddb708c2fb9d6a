"""Servers and load generators: start, pin, measure, stop.

Servers run on core 0 (``taskset -c 0``), load generators on core 1.  CPU
time of a server is read from ``/proc/<pid>/stat`` (utime + stime, in clock
ticks) before and after each load run.
"""

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import time
from typing import Dict, List, Tuple

SERVER_CORE = "0"
LOAD_CORE = "1"
_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A server or load generator misbehaved; the message says how."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def pinned(core: str, argv: List[str], pin: bool) -> List[str]:
    return (["taskset", "-c", core] + argv) if pin else argv


class Server:
    """One server process, pinned to the server core, announced by READY."""

    def __init__(self, label: str, argv: List[str], env: Dict[str, str], cwd: str,
                 log_path: str, pin: bool = True) -> None:
        self.label = label
        self.argv = argv
        self.command = " ".join(pinned(SERVER_CORE, argv, pin))
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen(pinned(SERVER_CORE, argv, pin), cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=self._log,
                                     universal_newlines=True, bufsize=1)
        self.info: Dict[str, object] = {}

    def read_line(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with ``prefix``, bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s: no %s line within %.0f s" % (self.label, prefix, timeout))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise BenchError("%s exited (code %s); see %s"
                                 % (self.label, self.proc.wait(), self._log.name))
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def wait_ready(self, timeout: float = 60.0) -> None:
        rest = self.read_line("READY", timeout)
        self.info = json.loads(rest) if rest.startswith("{") else {}

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", value)
    if not m:
        raise BenchError("unreadable wrk latency %r" % value)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measured(server: Server, cmd: List[str], seconds: float) -> Tuple[str, int, float, float]:
    """Run a load generator against ``server``: its output (stderr
    included), its exit status, the server's CPU seconds meanwhile, and the
    share of one core the load generator itself used.  A share near 1.0
    means the load generator, not the server, set the rate."""
    before, load_before, start = server.cpu(), _children_cpu(), time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=seconds + 60)
    wall = time.monotonic() - start
    load_share = (_children_cpu() - load_before) / wall if wall > 0 else float("nan")
    return proc.stdout, proc.returncode, server.cpu() - before, load_share


def wrk_command(port: int, conns: int, seconds: float, pin: bool = True) -> List[str]:
    url = "http://127.0.0.1:%d/" % port
    return pinned(LOAD_CORE, ["wrk", "-t1", "-c%d" % conns, "-d%ds" % max(1, round(seconds)),
                              "--latency", url], pin)


def run_wrk(server: Server, port: int, conns: int, seconds: float, pin: bool = True) -> dict:
    """One wrk run against ``server``: req/s, p50/p99 (ms), CPU µs per request
    and wrk's share of its core."""
    out, _, cpu, load_share = _measured(server, wrk_command(port, conns, seconds, pin), seconds)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"\n\s+50%\s+(\S+)", out)
    p99 = re.search(r"\n\s+99%\s+(\S+)", out)
    if not (rate and total and p50 and p99):
        raise BenchError("%s: unreadable wrk output:\n%s" % (server.label, out))
    n = int(total.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rate": float(rate.group(1)), "p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)),
            "cpu_us": cpu / n * 1e6 if n else float("nan"), "errors": errors,
            "load_share": load_share}


def run_rate(server: Server, binary: str, port: int, conns: int, rate: float,
             seconds: float, pin: bool = True, ws_size: int = 0) -> dict:
    """One open-loop run of ``bin/http_rate``: ``rate`` requests per second
    over ``conns`` keep-alive connections whatever the answers, latency
    counted from the time each request fell due.  Returns the answers per
    second, p50/p99/p99.9 (ms), CPU µs per answer (warm-up included, as the
    CPU window is), errors, and ``missing``: requests still unanswered when
    the run ended; and http_rate's share of its core.  ``binary`` is
    ``bin/http_rate``, or with ``ws_size`` ``bin/ws_rate``, which does the
    same with WebSocket messages of that size (its output has the same form)."""
    url = ("ws://127.0.0.1:%d/" if ws_size else "http://127.0.0.1:%d/") % port
    argv = [binary, url, str(conns), "%g" % rate, "%g" % seconds]
    cmd = pinned(LOAD_CORE, argv + ([str(ws_size)] if ws_size else []), pin)
    out, status, cpu, load_share = _measured(server, cmd, seconds)
    m = re.search(r"RESULT due=(\d+) done=(\d+) all=(\d+) secs=\S+ rate=([\d.]+) "
                  r"p50_us=([\d.]+) p99_us=([\d.]+) p999_us=([\d.]+) errors=(\d+)", out)
    if not m:
        raise BenchError("%s: %s failed (exit status %s):\n%s"
                         % (server.label, os.path.basename(binary), status, out))
    n = int(m.group(3))
    return {"rate": float(m.group(4)), "p50": float(m.group(5)) / 1000,
            "p99": float(m.group(6)) / 1000, "p999": float(m.group(7)) / 1000,
            "cpu_us": cpu / n * 1e6 if n else float("nan"), "errors": int(m.group(8)),
            "missing": int(m.group(1)) - int(m.group(2)), "load_share": load_share}


def ws_command(ws_load: str, port: int, conns: int, seconds: float, pin: bool = True,
               size: int = 32, depth: int = 1) -> List[str]:
    argv = [ws_load, "ws://127.0.0.1:%d/" % port, str(conns), "%g" % seconds]
    if size != 32 or depth != 1:
        argv.append(str(size))
    if depth != 1:
        argv.append(str(depth))
    return pinned(LOAD_CORE, argv, pin)


def run_ws(server: Server, ws_load: str, port: int, conns: int, seconds: float,
           pin: bool = True, size: int = 32, depth: int = 1) -> dict:
    """One WebSocket echo run of ``size``-byte messages, ``depth`` in flight
    on each connection: msg/s, p50/p99 (ms), CPU µs per message and
    ws_load's share of its core."""
    # ws_load counts for `seconds` after its own warm-up; the CPU window is a
    # little wider (connect, warm-up), which the per-message figure absorbs.
    out, status, cpu, load_share = _measured(
        server, ws_command(ws_load, port, conns, seconds, pin, size, depth), seconds)
    m = re.search(r"RESULT msgs=(\d+) secs=([\d.]+) rate=([\d.]+) p50_us=([\d.]+) "
                  r"p99_us=([\d.]+) errors=(\d+)", out)
    if status != 0 or not m:
        raise BenchError("%s: ws_load failed:\n%s" % (server.label, out))
    n = int(m.group(1))
    return {"rate": float(m.group(3)), "p50": float(m.group(4)) / 1000,
            "p99": float(m.group(5)) / 1000, "cpu_us": cpu / n * 1e6 if n else float("nan"),
            "errors": int(m.group(6)), "load_share": load_share}


def open_idle(port: int, count: int, timeout: float = 30.0) -> List[socket.socket]:
    """``count`` connected TCP sockets to ``port`` that send nothing."""
    socks = []
    deadline = time.monotonic() + timeout
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def run_idle(label: str, argv: List[str], port: int, env: Dict[str, str], cwd: str,
             log_path: str, count: int, pin: bool = True) -> float:
    """Start an idle-mode server on ``port``, give it ``count`` idle connections.

    Returns what the server measured: ns per connection per poll.
    """
    server = Server(label, argv, env, cwd, log_path, pin)
    socks: List[socket.socket] = []
    try:
        server.wait_ready()
        socks = open_idle(port, count)
        if len(socks) < count:
            raise BenchError("%s: opened only %d idle connections" % (label, len(socks)))
        return float(server.read_line("RESULT", 120))
    finally:
        for s in socks:
            s.close()
        server.stop()
