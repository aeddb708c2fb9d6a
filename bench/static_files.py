"""Throughput of a 1 GiB static file: ``cymongoose serve`` vs nginx vs ``python -m http.server``.

    python3 bench/static_files.py [--python PATH] [--rounds N]

Each server serves the same sparse 1 GiB file (made in a temporary
directory); curl downloads it to /dev/null ``--rounds`` times (default 3).
Printed per server: median wall seconds and MB/s with the spread
(min..max), and the server's CPU seconds per GiB (user+system, read from
/proc/PID/stat), the figure least disturbed by other load on the machine.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

SIZE = 1 << 30
HERE = os.path.dirname(os.path.abspath(__file__))
NGINX_USER = [""]
NGINX_CONF = """%(user)s daemon off; worker_processes 1; pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx.err;
events { worker_connections 64; }
http { access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path %(dir)s/t; proxy_temp_path %(dir)s/t; fastcgi_temp_path %(dir)s/t;
  uwsgi_temp_path %(dir)s/t; scgi_temp_path %(dir)s/t;
  server { listen 127.0.0.1:%(port)d; root %(root)s; } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port a child opens; bench only
    raise RuntimeError("server did not listen on %d" % port)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its reaped children (nginx's worker is not)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(pid: int) -> List[int]:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [pid] + [int(p) for p in f.read().split()]
    except OSError:
        return [pid]


def measure(port: int, pid: int, rounds: int) -> Tuple[List[float], float]:
    url = "http://127.0.0.1:%d/big.bin" % port
    walls: List[float] = []
    pids = worker_pids(pid)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    for _ in range(rounds):
        t0 = time.monotonic()
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url],
                             check=True, capture_output=True, timeout=600)
        walls.append(time.monotonic() - t0)
        if int(out.stdout) != SIZE:
            raise RuntimeError("downloaded %s bytes, not %d" % (out.stdout, SIZE))
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    return walls, cpu / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with cymongoose installed (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="static-bench-")
    os.chmod(work, 0o755)  # nginx's worker may run as another user
    root = os.path.join(work, "www")
    os.makedirs(os.path.join(work, "t"))
    os.makedirs(root)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.truncate(SIZE)
    servers: Dict[str, List[str]] = {
        "cymongoose serve": [args.python, "-m", "cymongoose", "serve", root, "--listen",
                             "http://127.0.0.1:%(port)d"],
        "nginx (sendfile)": ["/usr/sbin/nginx", "-c", "%(dir)s/nginx.conf", "-p", "%(dir)s"],
        "python -m http.server": [sys.executable, "-m", "http.server", "-b", "127.0.0.1",
                                  "-d", root, "%(port)d"],
    }
    if os.geteuid() == 0:
        NGINX_USER[0] = "user root;"
    print("%-24s %10s %22s %12s" % ("server", "median s", "MB/s (min..max)", "CPU s/GiB"))
    try:
        for name, argv in servers.items():
            port = free_port()
            values = {"port": port, "dir": work, "root": root, "user": NGINX_USER[0]}
            with open(os.path.join(work, "nginx.conf"), "w") as f:
                f.write(NGINX_CONF % values)
            proc = subprocess.Popen([a % values for a in argv], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, cwd=work)  # not the source tree
            try:
                wait_listening(port, proc)
                walls, cpu = measure(port, proc.pid, args.rounds)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
            rates = sorted(SIZE / 1e6 / w for w in walls)
            print("%-24s %10.2f %9.0f (%4.0f..%4.0f) %12.2f" % (
                name, statistics.median(walls), statistics.median(rates), rates[0], rates[-1],
                cpu))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
