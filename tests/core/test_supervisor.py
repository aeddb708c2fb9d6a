"""cymongoose.supervisor from Python: a user's own Manager-based server under a
master, crash-loop backoff, startup failure, inherited-socket checks."""

import os
import re
import signal
import socket
import sys
import textwrap

import httpx
import pytest

from cymongoose.supervisor import Supervisor, bind, inherited_sockets
from support.loop import wait_until
from support.subprocs import Proc

MASTER = textwrap.dedent('''
    import logging, os, signal, sys, time
    import cymongoose as cm
    from cymongoose.supervisor import Supervisor, bind, notify_ready

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(created).3f %(name)s: %(message)s")
    mode = sys.argv[1]
    if mode == "term-at-fork":
        # A SIGTERM that reaches each worker before its own handlers are set
        # (as when the master is stopped while a worker is still starting).
        os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))
    if mode == "master-gone-at-fork":
        # The master dies before its worker has started watching it.
        def orphan():
            print("worker %d forked" % os.getpid(), flush=True)
            master = os.getppid()
            os.kill(master, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while os.getppid() == master and time.monotonic() < deadline:
                time.sleep(0.001)  # until this process is an orphan
        os.register_at_fork(after_in_child=orphan)

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def hello(conn, ev, data):
        conn.reply(200, "pid %d" % os.getpid())

    def worker(socks):
        if mode == "crash":
            raise RuntimeError("boom")
        if mode == "startup-fails":
            sys.exit(3)
        print("worker %d set up" % os.getpid(), flush=True)
        with cm.Manager(hello) as mgr:
            mgr.listen_fd(socks[0].fileno(), http=True)
            notify_ready()
            mgr.run()

    sock = bind("127.0.0.1", 0)
    sys.exit(Supervisor(worker, [sock], workers=2).run(lambda: print(
        "listening on http://127.0.0.1:%d" % sock.getsockname()[1], flush=True)))
''')


@pytest.fixture
def master(tmp_path):
    script = tmp_path / "master.py"
    script.write_text(MASTER)
    procs = []

    def start(mode):
        proc = Proc([str(script), mode])
        procs.append(proc)
        proc.port = proc.printed_port()
        return proc

    yield start
    for proc in procs:
        proc.kill()


def test_own_manager_server_under_a_master(master):
    proc = master("serve")
    seen = set()
    for _ in range(400):
        r = httpx.get("http://127.0.0.1:%d/" % proc.port, headers={"Connection": "close"},
                      timeout=10)
        seen.add(r.text)
        if len(seen) == 2:
            break
    assert len(seen) == 2
    assert proc.stop() == 0, proc.output


def test_crash_loop_backs_off(master):
    proc = master("crash")
    # Each death is logged with its time; the gaps grow (0, 0, 0.2, 0.4, 0.8 s ...).
    deaths = re.compile(r"^([\d.]+) cymongoose.supervisor: worker \d+ exited with status 1$",
                        re.M)
    proc.wait_for(re.compile(r"(?:exited with status 1[\s\S]*){6}"), 20)
    times = [float(t) for t in deaths.findall(proc.output)]
    gaps = [b - a for a, b in zip(times, times[1:6])]
    assert max(gaps) >= 0.35, times  # without backoff: milliseconds
    assert proc.stop() == 0


def test_startup_failure_stops_the_master_with_status_3(master):
    proc = master("startup-fails")
    assert proc.p.wait(20) == 3, proc.output
    assert "the application failed to start" in proc.output


def test_a_signal_that_reaches_a_worker_while_it_starts_is_not_lost(master):
    # The master's handler, inherited by the fork, would swallow it (and stop
    # the master through its wakeup pipe) and the worker would serve on: it
    # must wait until the worker has dropped that handler, then end it.
    proc = master("term-at-fork")
    proc.wait_for(re.compile(r"worker \d+ (exited with status -15|set up)"), 20)
    assert "set up" not in proc.output, proc.output
    assert proc.stop() == 0, proc.output


def _running(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_whose_master_died_before_it_started_stops(tmp_path):
    script = tmp_path / "master.py"
    script.write_text(MASTER)
    proc = Proc([str(script), "master-gone-at-fork"])
    try:
        assert proc.p.wait(20) == -signal.SIGKILL
        proc.wait_for(re.compile(r"worker \d+ forked"), 20)
        for pid in map(int, re.findall(r"worker (\d+) forked", proc.output)):
            wait_until(lambda: not _running(pid), 10)  # it watches the pid it was forked by
    finally:
        proc.kill()
        for pid in map(int, re.findall(r"worker (\d+) forked", proc.output)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_arguments_and_inherited_socket_checks(tmp_path):
    sock = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ValueError, match="at least 1"):
            Supervisor(lambda s: None, [sock], workers=0)
        with pytest.raises(ValueError, match="listening socket"):
            Supervisor(lambda s: None, [])
    finally:
        sock.close()
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(ValueError, match="not a listening stream socket"):
            inherited_sockets([f.fileno()])
    unbound = socket.socket()
    try:
        with pytest.raises(ValueError, match="not a listening"):
            inherited_sockets([unbound.fileno()])
    finally:
        unbound.close()
    assert inherited_sockets([], {"LISTEN_PID": "1", "LISTEN_FDS": "1"}) == []
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"}
    with pytest.raises(ValueError, match="LISTEN_FDS"):
        inherited_sockets([], env)


def test_inherited_sockets_keep_their_blocking_flag():
    # Shared with every process that holds the descriptor (systemd, workers
    # already serving it): wrapping it in a socket object must not change it.
    # (PyPy's socket(fileno=) made it blocking.)
    sock = bind("127.0.0.1", 0)
    sock.setblocking(False)
    fd = os.dup(sock.fileno())
    try:
        got = inherited_sockets([fd])
        assert len(got) == 1 and got[0].fileno() == fd
        assert not os.get_blocking(sock.fileno())
        got[0].detach()
    finally:
        os.close(fd)
        sock.close()
