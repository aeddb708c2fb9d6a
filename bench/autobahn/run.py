"""Run the Autobahn WebSocket cases against our echo server or client, then summarise.

The cases are driven by kosoku (a Python 3 runner of the Autobahn TestSuite
case files, on PyPI).  kosoku itself needs CPython 3.10+; the echo server
(or, with ``--client``, the echo client run against kosoku's fuzzing
server) runs on whichever interpreter ``--server-python`` names, so PyPy
can be tested too.

With ``--asgi`` the server cases run against our ASGI server instead
(``python -m cymongoose asgi asgi_apps:ws_echo``, the echo application of
the servers comparison), without chapters 9, 12 and 13 (no
permessage-deflate there, and Mongoose's default message size).

Usage:
    python bench/autobahn/run.py [--client | --asgi] [--server-python PY] [--out DIR]
                                 [-i CASE]... [-x CASE]... [-p N]

Prints a table of verdicts per chapter and every case that is not OK; the
full HTML/JSON reports land in ``--out`` (default ``build/autobahn``).
Exits 1 when a case outside the expected failures (``EXPECTED_FAIL``) fails.
"""

import argparse
import collections
import fnmatch
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Every case passes; list a case here (with the reason) to accept its failure.
EXPECTED_FAIL: List[str] = []


def _kosoku() -> str:
    exe = shutil.which("kosoku", path=os.path.dirname(sys.executable)) or shutil.which("kosoku")
    if exe is None:
        sys.exit("kosoku is not installed: pip install kosoku (CPython 3.10+)")
    return exe


def _start_server(python: str) -> Tuple[subprocess.Popen, int]:
    # The server imports the cymongoose installed for `python` (set
    # PYTHONPATH to test a source tree built in place).
    proc = subprocess.Popen([python, os.path.join(HERE, "echo_server.py"), "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "PORT n", or "" if the server died
    if not line.startswith("PORT "):
        proc.kill()
        sys.exit("echo server did not start (%r)" % line)
    return proc, int(line.split()[1])


def _start_asgi_server(python: str) -> Tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([python, "-m", "cymongoose", "--log-level", "WARNING", "asgi",
                             "--app-dir", os.path.join(ROOT, "bench", "servers"),
                             "asgi_apps:ws_echo", "--listen", "http://127.0.0.1:%d" % port])
    deadline = time.monotonic() + 30
    while True:  # until the server accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("ASGI echo server did not start")
            time.sleep(0.05)  # polling a port that is not open yet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_client(kosoku: str, python: str, args: argparse.Namespace) -> None:
    """kosoku as the fuzzing server; our echo client runs its cases."""
    port = _free_port()
    if os.path.exists(os.path.join(args.out, "index.json")):
        os.remove(os.path.join(args.out, "index.json"))
    cmd = [kosoku, "-m", "fuzzingserver", "127.0.0.1:%d" % port, "-o", args.out]
    for case in args.include:
        cmd += ["-i", case]
    for case in args.exclude:
        cmd += ["-x", case]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the fuzzing server accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("kosoku fuzzing server did not start")
                time.sleep(0.05)  # polling a port that is not open yet
        subprocess.run([python, os.path.join(HERE, "echo_client.py"), "127.0.0.1:%d" % port],
                       check=True, timeout=3600)
        index = os.path.join(args.out, "index.json")
        deadline = time.monotonic() + 30
        while not os.path.exists(index) and time.monotonic() < deadline:
            time.sleep(0.05)  # the reports are written after /updateReports closes
    finally:
        server.terminate()
        server.wait(10)


def _verdict(entry: Dict[str, str]) -> str:
    if entry["behavior"] == "OK" and entry["behaviorClose"] != "OK":
        return "CLOSE " + entry["behaviorClose"]
    return entry["behavior"]


def _summarise(out: str) -> List[Tuple[str, str]]:
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    cases = next(iter(index.values()))
    table: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    odd = []
    for case_id, entry in cases.items():
        verdict = _verdict(entry)
        table[case_id.split(".")[0]][verdict] += 1
        if verdict != "OK":
            odd.append((case_id, verdict))
    verdicts = sorted({v for row in table.values() for v in row})
    print("| chapter | " + " | ".join(verdicts) + " |")
    print("|---" * (len(verdicts) + 1) + "|")
    for chapter in sorted(table, key=int):
        print("| %s | " % chapter + " | ".join(str(table[chapter][v]) for v in verdicts) + " |")
    total: collections.Counter = collections.Counter()
    for row in table.values():
        total.update(row)
    print("| all | " + " | ".join(str(total[v]) for v in verdicts) + " |")
    key = lambda item: [int(x) for x in item[0].split(".")]  # noqa: E731
    for case_id, verdict in sorted(odd, key=key):
        print("  %s: %s" % (case_id, verdict))
    return odd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server-python", default=sys.executable,
                    help="interpreter running the echo server (default: this one)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "autobahn"))
    ap.add_argument("-i", "--include", action="append", default=[])
    ap.add_argument("-x", "--exclude", action="append", default=[])
    ap.add_argument("-p", "--parallelism", type=int, default=2)
    ap.add_argument("--client", action="store_true",
                    help="run the client cases (kosoku's fuzzing server) instead")
    ap.add_argument("--asgi", action="store_true",
                    help="run the server cases against the ASGI server instead")
    args = ap.parse_args()
    if args.asgi:
        args.exclude += ["9.*", "12.*", "13.*"]

    kosoku = _kosoku()
    if args.client:
        _run_client(kosoku, args.server_python, args)
        print("client: %s; fuzzing server: %s; reports: %s"
              % (args.server_python, kosoku, args.out))
        _finish(args.out)
        return
    proc, port = (_start_asgi_server if args.asgi else _start_server)(args.server_python)
    try:
        cmd = [kosoku, "127.0.0.1:%d" % port, "-o", args.out, "-p", str(args.parallelism)]
        for case in args.include:
            cmd += ["-i", case]
        for case in args.exclude:
            cmd += ["-x", case]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    finally:
        proc.terminate()
        proc.wait(10)
    print("server: %s; runner: %s; reports: %s" % (args.server_python, kosoku, args.out))
    _finish(args.out)


def _finish(out: str) -> None:
    """Print the table; exit 1 on a failure not listed in EXPECTED_FAIL."""
    odd = _summarise(out)
    unexpected = [c for c, v in odd if v not in ("NON-STRICT", "INFORMATIONAL")
                  and not any(fnmatch.fnmatch(c, pat) for pat in EXPECTED_FAIL)]
    if unexpected:
        print("unexpected failures: %s" % ", ".join(unexpected))
        sys.exit(1)


if __name__ == "__main__":
    main()
