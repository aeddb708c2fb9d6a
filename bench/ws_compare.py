"""WebSocket echo: cymongoose vs websockets vs picows, with and without compression.

    python3 bench/ws_compare.py [--seconds 5] [--conns 10] [--sizes 32,65536]

Our package and websockets run from the test venvs that ``make
install-cpython install-pypy`` make (``.venv-cpython``, ``.venv-pypy``);
picows (CPython only, no permessage-deflate) from ``bench/.venv-picows``,
made here.  Uncompressed load comes from ``bench/bin/ws_load`` (C, built
here); compressed load from ``bench/ws_compare/deflate_load.py``, a
cymongoose client on CPython, since ws_load does not compress.  Each row:
echoes per second and the server's CPU time per echo (user + system, from
/proc, over the whole run including the 0.5 s warm-up; the headline on a
shared machine).  The load generator is the same for every server of a row
group, so the rows compare servers, not clients.
"""

import argparse
import os
import subprocess
import sys
import time
from typing import List, Optional, Tuple

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import _setup  # noqa: E402

SERVERS = os.path.join(BENCH, "ws_compare", "servers.py")
DEFLATE_LOAD = os.path.join(BENCH, "ws_compare", "deflate_load.py")
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _start(python: str, lib: str, compress: bool) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([python, SERVERS, lib, "on" if compress else "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            universal_newlines=True, cwd="/")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError("%s server did not start: %r" % (lib, line))
    return proc, int(line.split()[1])


def _row(python: str, lib: str, compress: bool, size: int, args: argparse.Namespace,
         ws_load: str, client_python: str) -> Optional[Tuple[float, float]]:
    try:
        proc, port = _start(python, lib, compress)
    except RuntimeError as exc:
        _setup.log(str(exc))
        return None
    try:
        url = "ws://127.0.0.1:%d/" % port
        if compress:
            cmd = [client_python, DEFLATE_LOAD, url, str(args.conns), str(args.seconds), str(size)]
        else:
            cmd = [ws_load, url, str(args.conns), str(args.seconds), str(size)]
        cpu0 = _cpu(proc.pid)
        out = subprocess.run(cmd, stdout=subprocess.PIPE, universal_newlines=True,
                             timeout=args.seconds + 60, cwd="/").stdout
        cpu = _cpu(proc.pid) - cpu0
    finally:
        proc.kill()
        proc.wait(10)
    result = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if not result:
        return None
    fields = dict(kv.split("=") for kv in result[0].split()[1:])
    rate = float(fields["rate"])
    if rate <= 0:
        return None
    total = rate * (float(fields["secs"]) + 0.5)
    return rate, cpu / total * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--sizes", default="32,65536")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    ws_load = os.path.join(_setup.BIN, "ws_load")
    _setup.build_c(_setup.mongoose_dir())
    cpy = os.path.join(ROOT, ".venv-cpython", "bin", "python")
    pypy = os.path.join(ROOT, ".venv-pypy", "bin", "python")
    picows = _setup.ensure_venv(".venv-picows", sys.executable, ["picows"], "picows")
    runs: List[Tuple[str, str, str]] = [
        ("cymongoose", "CPython", cpy), ("cymongoose", "PyPy", pypy),
        ("websockets", "CPython", cpy), ("websockets", "PyPy", pypy),
        ("picows", "CPython", picows),
    ]
    print("command: %s" % " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]))
    print("machine: %s, %d CPUs; %d connections, %.0f s per row"
          % (os.uname().machine, os.cpu_count() or 0, args.conns, args.seconds))
    for name, python in (("CPython", cpy), ("PyPy", pypy), ("picows venv", picows)):
        print("%s: %s" % (name, _setup.version(python)))
    print()
    print("| server | interpreter | compression | size | msg/s | server CPU us/msg |")
    print("|---|---|---|---|---|---|")
    for compress in (False, True):
        for size in sizes:
            for lib, interp, python in runs:
                if not os.path.exists(python):
                    continue
                if lib == "picows" and compress:
                    print("| picows | CPython | deflate | %d | n/a (none) | |" % size)
                    continue
                got = _row(python, lib, compress, size, args, ws_load, cpy)
                if got is None:
                    print("| %s | %s | %s | %d | failed | |"
                          % (lib, interp, "deflate" if compress else "off", size))
                else:
                    print("| %s | %s | %s | %d | %.0f | %.1f |"
                          % (lib, interp, "deflate" if compress else "off", size, got[0], got[1]))
                sys.stdout.flush()
                time.sleep(0.5)  # let the kernel recycle the ports between rows


if __name__ == "__main__":
    main()
