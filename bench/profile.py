"""Where a server's CPU time goes per request, at HTTP c=50, with perf.

    python3 bench/profile.py                      # every server
    python3 bench/profile.py cpy-declared pypy-plain --seconds 10

Run ``bench/run.py`` once first: it builds the C server and the venvs this
script uses (ours built in place in this checkout).  Each server is pinned
to core 0 under ``wrk -t1 -c50`` on core 1 while ``perf record -e cpu-clock``
samples it; the report splits the server's CPU time per request by shared
object (kernel, interpreter, Mongoose + our shim, cffi, JIT code) and lists
the busiest user-space symbols.  PyPy's Debian build is stripped, so its
interpreter shows as addresses; JIT-compiled Python shows as ``[JIT]``.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _load  # noqa: E402
from _setup import BENCH, BIN, ROOT  # noqa: E402

OUT = os.path.join(BENCH, "out")
SERVERS = os.path.join(BENCH, "servers")


def commands() -> Dict[str, Tuple[List[str], Dict[str, str]]]:
    ours = dict(os.environ, PYTHONPATH=ROOT)
    theirs = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    hello = os.path.join(SERVERS, "hello.py")
    wsgi = os.path.join(SERVERS, "wsgi_ours.py")
    cpy = os.path.join(BENCH, ".venv-cpython", "bin", "python")
    pypy = os.path.join(BENCH, ".venv-pypy", "bin", "python")
    cython = os.path.join(BENCH, ".venv-cython", "bin", "python")
    return {
        "c": ([os.path.join(BIN, "c_server"), "http"], theirs),
        "cython": ([cython, hello, "plain"], theirs),
        "cpy-plain": ([cpy, hello, "plain"], ours),
        "cpy-declared": ([cpy, hello, "declared"], ours),
        "pypy-plain": ([pypy, hello, "plain"], ours),
        "pypy-declared": ([pypy, hello, "declared"], ours),
        # The raw WSGI app on our WSGI server: inline (workers=0) and 8 threads.
        "cpy-wsgi-inline": ([cpy, wsgi, "raw", "0"], ours),
        "cpy-wsgi-threads": ([cpy, wsgi, "raw", "8"], ours),
        "pypy-wsgi-inline": ([pypy, wsgi, "raw", "0"], ours),
        "pypy-wsgi-threads": ([pypy, wsgi, "raw", "8"], ours),
    }


def perf_report(data: str, sort: str) -> List[Tuple[float, str]]:
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", sort],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(.*\S)", line)
        if m and not line.lstrip().startswith("#"):
            rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
    return rows


def profile(key: str, argv: List[str], env: Dict[str, str], seconds: float) -> str:
    port = _load.free_port()
    log = os.path.join(OUT, "profile-servers.log")
    server = _load.Server(key, argv + [str(port)], env, SERVERS, log)
    data = os.path.join(OUT, "perf-%s.data" % key)
    try:
        server.wait_ready()
        _load.run_wrk(server, port, 50, 2)  # warm-up (PyPy's JIT)
        wrk = subprocess.Popen(_load.wrk_command(port, 50, seconds + 2),
                               stdout=subprocess.PIPE, universal_newlines=True)
        before = server.cpu()
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
                        "-p", str(server.proc.pid), "-o", data, "--", "sleep", str(seconds)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        cpu = server.cpu() - before
        out = wrk.communicate(timeout=seconds + 60)[0]
    finally:
        server.stop()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    us = cpu / (rate * seconds) * 1e6  # CPU per request during the sampled window
    lines = ["%s: %.0f req/s, about %.2f us CPU per request" % (key, rate, us)]
    for pct, dso in perf_report(data, "dso")[:7]:
        lines.append("  %5.1f%%  %5.2f us  %s" % (pct, pct / 100 * us, dso))
    lines.append("  top user-space symbols:")
    syms = [(p, s) for p, s in perf_report(data, "dso,sym") if "[kernel" not in s]
    for pct, sym in syms[:12]:
        lines.append("  %5.1f%%  %5.2f us  %s" % (pct, pct / 100 * us, sym))
    return "\n".join(lines)


def main() -> int:
    table = commands()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("servers", nargs="*", default=list(table), help=" ".join(table))
    p.add_argument("--seconds", type=float, default=8)
    args = p.parse_args()
    if shutil.which("perf") is None:
        sys.exit("needs perf (Debian: linux-perf)")
    os.makedirs(OUT, exist_ok=True)
    for key in args.servers:
        argv, env = table[key]
        if not os.path.exists(argv[0]):
            sys.exit("%s is missing: run bench/run.py once first" % argv[0])
        print(profile(key, argv, env, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
