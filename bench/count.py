"""Instructions per request of one server, counted by callgrind (deterministic A/B).

    PYTHONPATH=. python3 bench/count.py [--conns 50] [--requests 20000] [--browser] SERVER ARGS...
    e.g. PYTHONPATH=. python3 bench/count.py --annotate 30 \
             "$(python3 -c 'import sys; print(sys.executable)')" bench/servers/hello.py declared

(Give the interpreter's real path: valgrind does not follow a pyenv shim's exec.)

Wall-clock numbers on a shared machine move by 10%; instruction counts do
not.  The server runs under ``valgrind --tool=callgrind`` (its port is
appended to ARGS) with instrumentation off; a client in this process warms
it up, switches instrumentation on (``callgrind_control -i on``), sends ``--requests`` keep-alive
``GET /`` in lock-step rounds over ``--conns`` connections (one request in
flight on each), switches it off, stops the server and prints instructions
per request (and with ``--annotate`` the busiest functions),
in the server process only (the kernel is not counted).  How many
``MG_EV_POLL`` a request sees depends on timing, so "plain" handlers still
vary by a few percent; "declared" ones by well under 1%.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, List

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#: The header fields a browser sends for a page after Host (Chromium's,
#: the cookie shortened); ``--browser`` here and in pair.py sends them.
BROWSER_FIELDS = [
    "Connection: keep-alive",
    'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile: ?0",
    'sec-ch-ua-platform: "Linux"',
    "Upgrade-Insecure-Requests: 1",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "*/*;q=0.8",
    "Sec-Fetch-Site: none",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-User: ?1",
    "Sec-Fetch-Dest: document",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Accept-Language: en-US,en;q=0.9",
    "Cookie: session=abc123; theme=dark",
]
BROWSER = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
           + "".join(f + "\r\n" for f in BROWSER_FIELDS) + "\r\n").encode()
UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
PAYLOAD = b"x" * 32
FRAME = bytes([0x81, 0x80 | len(PAYLOAD), 0, 0, 0, 0]) + PAYLOAD  # masked, mask 0
ECHO = bytes([0x81, len(PAYLOAD)]) + PAYLOAD


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def connect(port: int, n: int, deadline: float) -> List[socket.socket]:
    socks = []
    while len(socks) < n:
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the server is still starting under valgrind
    return socks


def read_until(s: socket.socket, done: Callable[[bytes], bool]) -> None:
    buf = b""
    while not done(buf):
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed the connection")
        buf += chunk


def rounds(socks: List[socket.socket], n: int, ws: bool = False, serial: bool = False,
           request: bytes = REQUEST) -> None:
    """``n`` rounds of one ``request`` (or WebSocket message) per connection,
    each answered before the next; with ``serial`` one at a time."""
    for _ in range(n):
        for group in ([[s] for s in socks] if serial else [socks]):
            for s in group:
                s.sendall(FRAME if ws else request)
            for s in group:
                if ws:
                    read_until(s, lambda b: len(b) >= len(ECHO))
                else:
                    read_until(s, lambda b: b"\r\n\r\n" in b and b.endswith(b"ok"))


def upgrade(socks: List[socket.socket]) -> None:
    for s in socks:
        s.sendall(UPGRADE)
        read_until(s, lambda b: b"\r\n\r\n" in b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--ws", action="store_true",
                   help="upgrade each connection and echo 32-byte text messages "
                        "(bench/servers/ws_echo.py) instead of GET /")
    p.add_argument("--serial", action="store_true",
                   help="one request in flight in all, the connections taking turns: "
                        "each poll finds one request and the other connections idle, "
                        "as an open-loop load well below capacity does")
    p.add_argument("--browser", action="store_true",
                   help="send the 15 header fields of a browser's page request, not Host alone")
    p.add_argument("--annotate", type=int, default=0, metavar="N",
                   help="also print the N functions with the most instructions")
    p.add_argument("server", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if not args.server:
        p.error("no server command")
    port = free_port()
    out_dir = tempfile.mkdtemp(prefix="cym-count-")
    out = os.path.join(out_dir, "cg.out")
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
           "--callgrind-out-file=" + out] + args.server + [str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socks = connect(port, args.conns, time.monotonic() + 120)
        n = max(1, args.requests // args.conns)
        if args.ws:
            upgrade(socks)
        request = BROWSER if args.browser else REQUEST
        rounds(socks, max(1, n // 5), args.ws, args.serial, request)  # warm-up: imports, first allocations, PyPy's JIT
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rounds(socks, n, args.ws, args.serial, request)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(120)
    text = subprocess.run(["callgrind_annotate", out], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout
    lines = [x.strip() for x in text.splitlines() if " (" in x and "%)" in x]
    counted = int(lines[0].split()[0].replace(",", ""))  # PROGRAM TOTALS
    for line in lines[1:1 + args.annotate]:
        print(line[:160])
    print(out) if os.environ.get("KEEP") else shutil.rmtree(out_dir, ignore_errors=True)
    requests = n * args.conns
    print("%d requests, %d instructions, %.0f per request"
          % (requests, counted, counted / requests))


if __name__ == "__main__":
    sys.exit(main())
