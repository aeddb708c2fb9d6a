"""``--workers N``: a master process and N workers, driven with real clients,
real signals and wrk; inherited listening sockets as systemd passes them."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Iterator, List, Set

import httpx
import pytest

from support.cli import BANNER, Server
from support.loop import wait_until
from support.sockets import read_until_closed
from support.subprocs import child_env

APP = textwrap.dedent('''
    import logging, os, sys, time

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/log":
            logging.getLogger("sup_app").warning("logged by worker %d", os.getpid())
        if environ["PATH_INFO"] == "/slow":
            print("slow started", flush=True)
            time.sleep(1.0)  # the work a slow request does
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pid %d" % os.getpid()]
''')


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("workers_app")
    (d / "sup_app.py").write_text(APP)
    return str(d)


@pytest.fixture
def servers() -> Iterator[List[Server]]:
    started: List[Server] = []
    yield started
    for server in started:
        server.kill()


def start(servers: List[Server], *args: str, cwd: str = None) -> Server:
    server = Server(*args, cwd=cwd)
    servers.append(server)
    return server


def pid_of(url: str, path: str = "/") -> int:
    """One request on a fresh connection (a raw socket: cheap enough for
    thousands); the worker's pid from the body.  A reset raises OSError."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        data = read_until_closed(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return int(body.split()[1])


def pids_seen(url: str, want: int, limit: int = 400) -> Set[int]:
    """Ask on fresh connections until ``want`` distinct workers answered (bounded)."""
    seen: Set[int] = set()
    for _ in range(limit):
        seen.add(pid_of(url))
        if len(seen) >= want:
            break
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wsgi_workers(servers: List[Server], app_dir: str, *extra: str) -> Server:
    return start(servers, "--log-level", "WARNING", "wsgi", "sup_app:app", "--workers", "2",
                 "--listen", "http://127.0.0.1:0", "--app-dir", app_dir, *extra)


def test_two_workers_answer_from_two_pids(servers: List[Server], app_dir: str) -> None:
    server = wsgi_workers(servers, app_dir)
    master = server.p.pid
    seen = pids_seen(server.url, 2)
    assert len(seen) == 2 and master not in seen
    server.stop_cleanly()
    assert not any(alive(pid) for pid in seen)


def test_a_workers_log_records_reach_stderr(servers: List[Server], app_dir: str) -> None:
    server = wsgi_workers(servers, app_dir)
    pid = pid_of(server.url, "/log")
    server.wait_for("WARNING sup_app: logged by worker %d" % pid, timeout=10)
    server.stop_cleanly()


def test_kill_9_worker_is_replaced_and_a_retrying_loop_sees_no_error(
        servers: List[Server], app_dir: str) -> None:
    server = wsgi_workers(servers, app_dir)
    first = pids_seen(server.url, 2)
    assert len(first) == 2
    errors: List[BaseException] = []
    answered: List[int] = []
    killed = threading.Event()

    def loop() -> None:
        for i in range(2000):
            if i == 200:
                killed.set()
            for attempt in (1, 2):  # one retry on a reset
                try:
                    answered.append(pid_of(server.url))
                    break
                except (OSError, AssertionError, ValueError, IndexError) as exc:
                    if attempt == 2:
                        errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    assert killed.wait(60)
    victim = sorted(first)[0]
    os.kill(victim, signal.SIGKILL)
    # A new worker serves while the loop still runs: a pid neither original
    # answers.  (No speed bound: a loaded machine may take a while.)
    wait_until(lambda: set(answered) - first, 20)
    thread.join(120)
    assert not thread.is_alive()
    assert not errors, errors[:3]
    assert len(answered) == 2000
    server.stop_cleanly()


def test_sigterm_lets_in_flight_requests_finish(servers: List[Server], app_dir: str) -> None:
    server = wsgi_workers(servers, app_dir)
    workers = pids_seen(server.url, 2)
    result: List[httpx.Response] = []
    thread = threading.Thread(target=lambda: result.append(
        httpx.get(server.url + "/slow", timeout=20)))
    thread.start()
    server.wait_for("slow started", 10)
    server.p.send_signal(signal.SIGTERM)
    thread.join(20)
    assert result and result[0].status_code == 200 and result[0].text.startswith("pid ")
    assert server.p.wait(20) == 0, server.output
    assert "Traceback" not in server.output
    assert not any(alive(pid) for pid in workers), "orphan worker left"


def test_ttin_ttou_change_the_worker_count(servers: List[Server], app_dir: str) -> None:
    server = start(servers, "wsgi", "sup_app:app", "--workers", "1", "--listen",
                   "http://127.0.0.1:0", "--app-dir", app_dir)
    server.p.send_signal(signal.SIGTTIN)
    server.wait_for("workers: 2", 10)
    assert len(pids_seen(server.url, 2)) == 2
    server.p.send_signal(signal.SIGTTOU)
    server.wait_for("workers: 1", 10)
    server.stop_cleanly()


def children(pid: int) -> Set[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return {int(p) for p in f.read().split()}


def _established(port: int) -> int:
    """Client connections to ``port`` that are established (from /proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def test_sighup_under_wrk_load_drops_nothing(servers: List[Server], tmp_path) -> None:
    (tmp_path / "index.html").write_bytes(b"hello\n")
    server = start(servers, "--log-level", "WARNING", "serve", str(tmp_path), "--workers", "2",
                   "--listen", "http://127.0.0.1:0")
    before = children(server.p.pid)
    assert len(before) == 2
    wrk = subprocess.Popen(["wrk", "-t1", "-c20", "-d4s", server.url + "/index.html"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _established(server.port) >= 20, 10)
        server.p.send_signal(signal.SIGHUP)

        def replaced() -> bool:
            now = children(server.p.pid)
            return len(now) == 2 and not now & before
        wait_until(replaced, 4)  # while wrk still runs
        assert wrk.poll() is None
        out, _ = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    assert wrk.returncode == 0, out
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    assert requests > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    server.stop_cleanly()


def _systemd_child(sock: socket.socket, *args: str) -> subprocess.Popen:
    """Start ``python -m cymongoose ARGS`` with ``sock`` as fd 3, LISTEN_FDS=1 and
    LISTEN_PID set to the child's own pid, as systemd does (a launcher that
    sets them up, then execs in the same process)."""
    launcher = ("import os, sys; os.dup2(%d, 3); os.close(%d); "
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                "os.execv(sys.executable, [sys.executable, '-m', 'cymongoose'] + sys.argv[1:])"
                % (sock.fileno(), sock.fileno()))
    return subprocess.Popen([sys.executable, "-c", launcher] + list(args),
                            pass_fds=(sock.fileno(),), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=child_env())


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_systemd_socket_activation(app_dir: str, workers: List[str]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    child = _systemd_child(sock, "wsgi", "sup_app:app", "--app-dir", app_dir,
                           "--listen", "http://127.0.0.1:1", *workers)
    sock.close()  # the child holds it now
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert BANNER.search(line) and (":%d/" % port) in line, line
        assert pid_of("http://127.0.0.1:%d" % port) != child.pid or not workers
    finally:
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out


def test_fd_option_and_bad_descriptors(app_dir: str, tmp_path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "cymongoose", "wsgi", "sup_app:app",
                              "--app-dir", app_dir, "--fd", str(sock.fileno())],
                             pass_fds=(sock.fileno(),), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=child_env())
    sock.close()
    try:
        assert child.stdout is not None
        assert (":%d/" % port) in child.stdout.readline()
        assert pid_of("http://127.0.0.1:%d" % port) == child.pid
    finally:
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out
    # A descriptor that is a file, not a listening socket: a usage error.
    with open(tmp_path / "f", "w") as f:
        bad = subprocess.run([sys.executable, "-m", "cymongoose", "wsgi", "sup_app:app",
                              "--app-dir", app_dir, "--fd", str(f.fileno())],
                             pass_fds=(f.fileno(),), capture_output=True, text=True,
                             env=child_env(), timeout=30)
    assert bad.returncode == 2 and "not a listening" in bad.stderr, bad.stderr


def test_serve_access_log_names_the_forwarded_client(servers: List[Server], tmp_path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    server = start(servers, "serve", str(tmp_path), "--listen", "http://127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
                  b"Connection: close\r\n\r\n")
        assert read_until_closed(s).startswith(b"HTTP/1.1 200 ")
    server.wait_for('203.0.113.9 - - "GET /a.txt HTTP/1.1" 200 1', 10)
    server.stop_cleanly()
