"""Bad input cannot make the server write unbounded output or stall on its log."""

import logging
import select
import signal
import subprocess
import sys
import textwrap

import httpx

from cymongoose._ratelog import BURST, PeerLogLimiter, peer_of_line
from support.hostile import logged
from support.loop import wait_until
from support.sockets import connect, read_until_closed
from support.subprocs import child_env

GARBAGE = b"GET\r\n\r\n"


def test_the_limiter_lets_a_burst_through_then_counts():
    now = [100.0]
    limiter = PeerLogLimiter(burst=3, window=10.0, clock=lambda: now[0])
    assert [limiter.admit("10.0.0.1") for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.admit("10.0.0.2") == 0  # each peer has its own share
    now[0] += 10.0
    assert limiter.admit("10.0.0.1") == 2  # the next window says what was suppressed
    assert limiter.admit("10.0.0.1") == 0


def test_the_limiter_tracks_a_bounded_number_of_peers():
    now = [0.0]
    limiter = PeerLogLimiter(burst=1, window=1.0, max_peers=100, clock=lambda: now[0])
    for i in range(1000):
        now[0] += 0.01
        assert limiter.admit("10.0.%d.%d" % (i // 256, i % 256)) == 0
    assert len(limiter._peers) <= 100


def test_peer_of_line():
    assert peer_of_line("HTTP request malformed (400): peer 127.0.0.1:5000, connection 3") \
        == "127.0.0.1"
    assert peer_of_line("x: peer [::1]:80, connection 1") == "[::1]"


def test_one_peer_flooding_bad_requests_logs_a_bounded_number_of_lines(server_factory, caplog):
    caplog.set_level(logging.WARNING, logger="cymongoose")
    _, port = server_factory(lambda c, ev, d: None)
    for _ in range(30):
        with connect(port) as s:
            s.sendall(GARBAGE)
            assert read_until_closed(s).startswith(b"HTTP/1.1 400")
    wait_until(lambda: logged(caplog, "HTTP request malformed (400)"))
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == BURST


def test_the_library_prints_nothing_unless_logging_is_configured():
    # A rejection logs a warning; with no handler of the application's, the
    # library's NullHandler keeps Python's last-resort handler quiet.
    code = textwrap.dedent("""
        import socket, cymongoose as cm
        mgr = cm.Manager()
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET\\r\\n\\r\\n")
        got = b""
        for _ in range(200):
            mgr.poll(10)
            s.setblocking(False)
            try:
                got += s.recv(1000)
            except BlockingIOError:
                pass
            if b"400" in got:
                break
        assert b"400" in got, got
        mgr.close()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_cli_keeps_serving_when_nobody_reads_its_stderr(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cymongoose", "--log-level", "DEBUG", "serve", str(tmp_path),
         "--listen", "http://127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True)
    try:
        assert proc.stdout is not None
        # "cymongoose ... on http://127.0.0.1:PORT/", read with a bound
        assert select.select([proc.stdout], [], [], 20)[0], "no banner within 20 s"
        banner = proc.stdout.readline()
        url = banner.split(" on ", 1)[1].strip()
        # Each request writes an access-log line: far more than a pipe holds
        # (64 KiB), and nobody drains stderr.
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(3000):
                assert client.get("/a.txt").text == "hello"
        # and it still stops at once, its log writer blocked or not
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
