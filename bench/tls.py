"""HTTPS: keep-alive requests/s and new handshakes/s, with server CPU per request.

Servers, each on CPython and on PyPy:
  openssl   cymongoose on the OpenSSL backend (the default build)
  builtin   cymongoose built with CYM_TLS=builtin (built here, in bench/out/)
  uvicorn   uvicorn with Python's ssl module, a bare ASGI app (bench-only venv)

Loads: ``wrk -t1 -c16`` over keep-alive connections, and ``openssl s_time
-new`` (one new TLS connection per request, no session resumption).  Each
server answers ``GET /`` with ``hello``.  The key is EC P-256, the one kind
every server here can use; ``--rsa`` adds RSA-2048 rows (not builtin).
CPU per request is the server process's user+system time over the run
divided by the requests served, which noisy shared cores disturb less than
req/s.  Usage: ``python bench/tls.py [--quick] [--rsa]`` from the repository
root after ``make install-cpython install-pypy``.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "out")
PYTHONS = {"cpython": os.path.join(ROOT, ".venv-cpython", "bin", "python"),
           "pypy": os.path.join(ROOT, ".venv-pypy", "bin", "python")}

CYM_SERVER = r'''
import sys, cymongoose as cm
opts = cm.TlsOpts(cert=sys.argv[1], key=sys.argv[2])
@cm.handles(cm.MG_EV_ACCEPT, cm.MG_EV_HTTP_MSG)
def handler(conn, ev, data):
    if ev == cm.MG_EV_ACCEPT:
        conn.tls_init(opts)
    else:
        conn.reply(200, b"hello")
mgr = cm.Manager(handler)
print(mgr.listen("https://127.0.0.1:0").local_addr[1], cm.TLS_BACKEND, flush=True)
mgr.run()
'''

UVICORN_SERVER = r'''
import socket, sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], "uvicorn", flush=True)
config = uvicorn.Config(app, ssl_certfile=sys.argv[1], ssl_keyfile=sys.argv[2],
                        log_level="error", access_log=False, lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
'''


def log(msg: str) -> None:
    print("[tls-bench] " + msg, file=sys.stderr, flush=True)


def make_certs(directory: str, kind: str) -> Tuple[str, str]:
    key, crt = os.path.join(directory, kind + ".key"), os.path.join(directory, kind + ".crt")
    algo = ["-newkey", "rsa:2048"] if kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", crt] + algo, check=True, capture_output=True)
    return crt, key


def builtin_build(python: str, name: str) -> str:
    """A CYM_TLS=builtin copy of the package for ``python``; its directory."""
    target = os.path.join(OUT, "builtin-tls-" + name)
    if os.path.exists(os.path.join(target, "cymongoose")) and any(
            f.startswith("_mg_cffi") for f in os.listdir(os.path.join(target, "cymongoose"))):
        return target
    log("building the CYM_TLS=builtin package for %s in %s" % (name, target))
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "cymongoose"), os.path.join(target, "cymongoose"),
                    ignore=shutil.ignore_patterns("_mg_cffi*.so", "__pycache__"))
    code = ("import sys; sys.path.insert(0, %r); import build_ffi; "
            "build_ffi.ffibuilder.compile(tmpdir='.')" % ROOT)
    subprocess.run([python, "-c", code], cwd=target, check=True, capture_output=True,
                   env=dict(os.environ, CYM_TLS="builtin"))
    return target


def uvicorn_python(name: str, python: str) -> Optional[str]:
    """A bench-only venv with uvicorn for this interpreter (never the test venvs)."""
    venv = os.path.join(BENCH, ".venv-tls-" + name)
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        log("creating %s with uvicorn" % venv)
        base = subprocess.run([python, "-c", "import sys; print(sys._base_executable)"],
                              capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([base, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "uvicorn"], check=True)
    return py


class Server:
    def __init__(self, python: str, code: str, cert: str, key: str,
                 pythonpath: Optional[str] = None) -> None:
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        # cwd: not the repository root, whose cymongoose/ has no extension built
        self.proc = subprocess.Popen([python, "-c", code, cert, key], env=env, cwd=OUT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        self.port, self.kind = int(line[0]), line[1]
        deadline = time.monotonic() + 20  # uvicorn listens after printing its port
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cpu(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def keep_alive(server: Server, seconds: int) -> Tuple[float, float]:
    """(requests/s, server CPU µs per request) under wrk."""
    cpu = server.cpu()
    out = subprocess.run(["wrk", "-t1", "-c16", "-d%ds" % seconds,
                          "https://127.0.0.1:%d/" % server.port],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    used = server.cpu() - cpu
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not total or not rate:
        raise RuntimeError("wrk: %s" % out)
    return float(rate.group(1)), used * 1e6 / max(int(total.group(1)), 1)


def handshakes(server: Server, seconds: int) -> Tuple[float, float]:
    """(new TLS connections/s, server CPU µs per connection) under s_time -new."""
    cpu = server.cpu()
    out = subprocess.run(["openssl", "s_time", "-connect", "127.0.0.1:%d" % server.port,
                          "-new", "-time", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    used = server.cpu() - cpu
    found = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not found:
        raise RuntimeError("s_time: %s" % out)
    count = int(found.group(1))
    return count / float(found.group(2)), used * 1e6 / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per load instead of 5")
    parser.add_argument("--rsa", action="store_true", help="also RSA-2048 (openssl, uvicorn)")
    args = parser.parse_args()
    seconds = 2 if args.quick else 5
    os.makedirs(OUT, exist_ok=True)
    certs = tempfile.mkdtemp(prefix="cym-tls-bench-")
    kinds = ["ec"] + (["rsa"] if args.rsa else [])
    files = {k: make_certs(certs, k) for k in kinds}
    rows: List[Tuple[str, ...]] = []
    for name, python in PYTHONS.items():
        if not os.path.exists(python):
            log("skipping %s: %s is missing (make install-%s)" % (name, python, name))
            continue
        setups: List[Tuple[str, str, str, Optional[str], List[str]]] = [
            ("openssl", python, CYM_SERVER, None, kinds),
            ("builtin", python, CYM_SERVER, builtin_build(python, name), ["ec"]),
            ("uvicorn", uvicorn_python(name, python) or "", UVICORN_SERVER, None, kinds),
        ]
        for label, py, code, path, key_kinds in setups:
            for kind in key_kinds:
                server = Server(py, code, *files[kind], pythonpath=path)
                try:
                    assert label == server.kind, (label, server.kind)
                    ka = keep_alive(server, seconds)
                    hs = handshakes(server, seconds)
                finally:
                    server.stop()
                rows.append((name, label, kind, "%.0f" % ka[0], "%.0f" % ka[1],
                             "%.0f" % hs[0], "%.0f" % hs[1]))
                log("%s %s %s: %s" % (name, label, kind, rows[-1][3:]))
    shutil.rmtree(certs)
    head = ("python", "server", "key", "keep-alive req/s", "CPU µs/req",
            "handshakes/s", "CPU µs/handshake")
    print("command: python bench/tls.py %s" % " ".join(sys.argv[1:]))
    print("machine: %d cores, %s" % (os.cpu_count() or 0, os.uname().release))
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
