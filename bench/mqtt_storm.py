"""MQTT connect storm: N clients connect at once; time until the last CONNACK.

    python bench/mqtt_storm.py [-n 10000] [--repeat 3] [--python PY ...]

Brokers: mosquitto (config in a temp dir: ``max_connections -1``, no
persistence) and ours (bench/servers/mqtt_broker.py, ``plain``) on each
interpreter given.  Both inherit this process's descriptor limit, raised to
the hard limit.  The client is one process on epoll: N non-blocking
connects in one burst, a CONNECT (MQTT 3.1.1, clean session, a unique client
id) on each as soon as it is writable, done when every socket has read its
4-byte CONNACK (bounded at 60 s).  Reports the time, the broker's CPU
seconds over the storm (/proc/PID/stat) and its RSS growth per client, right
after the last CONNACK and again after the clients stayed silent for
IDLE_SECONDS.  The
client is Python and shares the 2 cores: the broker's CPU is the fairer
figure.
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
from typing import Dict, List

from mqtt_bench import cpu_seconds, free_port, wait_port
from storm import version

BENCH = os.path.dirname(os.path.abspath(__file__))
CONNACK_OK = b"\x20\x02\x00\x00"
IDLE_SECONDS = 3


def connect_packet(client_id: bytes) -> bytes:
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def storm(port: int, n: int, pid: int) -> Dict[str, float]:
    time.sleep(1)
    cpu0, rss0 = cpu_seconds(pid), rss_kib(pid)
    ep = select.epoll()
    socks: Dict[int, socket.socket] = {}
    got: Dict[int, bytes] = {}
    start = time.monotonic()
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLOUT)
    done = failed = 0
    while done + failed < n and time.monotonic() - start < 60:
        for fd, mask in ep.poll(1.0):
            s = socks[fd]
            if mask & select.EPOLLOUT:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    ep.unregister(fd)
                    failed += 1
                    continue
                s.send(connect_packet(b"storm-%d" % fd))
                ep.modify(fd, select.EPOLLIN)
                got[fd] = b""
            elif mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = s.recv(16)
                except OSError:
                    data = b""
                got[fd] += data
                if not data or len(got[fd]) >= 4:
                    ep.unregister(fd)
                    if got[fd][:4] == CONNACK_OK:
                        done += 1
                    else:
                        failed += 1
    took = time.monotonic() - start
    row = {"connacks": done, "failed": failed, "seconds": took,
           "cpu": cpu_seconds(pid) - cpu0, "bytes_per_client": (rss_kib(pid) - rss0) * 1024.0 / max(done, 1)}
    # The clients stay connected and silent: what an idle client costs once
    # the broker had time to give back what it keeps only while busy.
    time.sleep(IDLE_SECONDS)
    row["bytes_idle"] = (rss_kib(pid) - rss0) * 1024.0 / max(done, 1)
    for s in socks.values():
        s.close()
    ep.close()
    return row


def start(kind: str, python: str, port: int, tmp: str) -> subprocess.Popen:
    if kind == "mosquitto":
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_connections -1\nlog_type none\n" % port)
        cmd = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf]
    else:
        cmd = [python, os.path.join(BENCH, "servers", "mqtt_broker.py"), str(port), "plain"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    wait_port(port, proc)
    return proc


def fmt(runs: List[Dict[str, float]], key: str, f: str) -> str:
    vals = [r[key] for r in runs]
    med = f % statistics.median(vals)
    return med if len(vals) == 1 else "%s (%s-%s)" % (med, f % min(vals), f % max(vals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--python", action="append", default=[])
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.n + 100 > hard:
        sys.exit("-n %d needs a descriptor hard limit above %d (it is %d)" % (a.n, a.n + 100, hard))
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    rows = [(out.splitlines()[0] if out else "mosquitto", "mosquitto", "")]
    for py in [os.path.abspath(p) for p in a.python] or [sys.executable]:
        rows.append(("ours (%s)" % version(py), "ours", py))
    print("%d clients connecting at once, descriptor limit %d, %d runs" % (a.n, hard, a.repeat))
    print("%-36s %8s %18s %18s %16s %16s" % ("broker", "connacks", "seconds", "broker cpu s", "B/client",
                                            "B/client idle"))
    for name, kind, py in rows:
        runs = []
        for _ in range(a.repeat):
            tmp = tempfile.mkdtemp(prefix="mqtt-storm-")
            port = free_port()
            proc = start(kind, py, port, tmp)
            try:
                runs.append(storm(port, a.n, proc.pid))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                shutil.rmtree(tmp, ignore_errors=True)
        print("%-36s %8d %18s %18s %16s %16s" % (
            name[:36], min(r["connacks"] for r in runs), fmt(runs, "seconds", "%.2f"),
            fmt(runs, "cpu", "%.2f"), fmt(runs, "bytes_per_client", "%.0f"),
            fmt(runs, "bytes_idle", "%.0f")), flush=True)


if __name__ == "__main__":
    main()
