"""The benchmark's servers and report (bench/): they run on this interpreter and
package, answer like the C server, and the README section is rewritten in place."""

import json
import os
import select
import socket
import subprocess
import sys
import time

import httpx
import pytest

import cymongoose
from support.paths import ROOT

BENCH = os.path.join(ROOT, "bench")
SERVERS = os.path.join(BENCH, "servers")
sys.path.insert(0, BENCH)

import _load  # noqa: E402
import _report  # noqa: E402


def read_line(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> str:
    """The next stdout line of ``proc`` starting with ``prefix``, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line[len(prefix):].strip()
    raise AssertionError("no %s line from %s" % (prefix, proc.args))


def start(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(SERVERS, script)] + list(args),
                            stdout=subprocess.PIPE, universal_newlines=True, cwd=SERVERS)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


@pytest.mark.parametrize("variant", ["plain", "declared"])
def test_hello_server_replies_ok_with_this_package(variant: str) -> None:
    port = _load.free_port()
    proc = start("hello.py", variant, str(port))
    try:
        info = json.loads(read_line(proc, "READY"))
        assert info["variant"] == variant
        assert info["file"] == os.path.dirname(cymongoose.__file__)
        with httpx.Client() as client:
            for _ in range(3):  # keep-alive: the same connection answers again
                r = client.get("http://127.0.0.1:%d/" % port)
                assert (r.status_code, r.text) == (200, "ok")
                assert r.headers["content-type"] == "text/plain"
    finally:
        stop(proc)
    assert proc.returncode == 0  # SIGTERM stops the loop and closes the Manager


@pytest.mark.parametrize("app", ["raw", "flask"])
@pytest.mark.parametrize("threads", ["0", "2"])
def test_wsgi_server_replies_ok_inline_and_on_threads(app: str, threads: str) -> None:
    pytest.importorskip("flask")
    port = _load.free_port()
    proc = start("wsgi_ours.py", app, threads, str(port))
    try:
        info = json.loads(read_line(proc, "READY"))
        assert info["file"] == os.path.dirname(cymongoose.__file__)
        with httpx.Client() as client:
            for _ in range(3):
                r = client.get("http://127.0.0.1:%d/" % port)
                assert (r.status_code, r.text) == (200, "ok")
                assert r.headers["content-type"].startswith("text/plain")
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_server_goals_compare_medians_with_the_named_peer() -> None:
    import servers_compare

    runs = {
        ("raw WSGI", "ours CPython, inline"): [run(30.0, 1.0, 20.0), run(34.0, 1.0, 20.0)],
        ("raw WSGI", "granian"): [run(50.0, 2.0, 16.0)],
        ("raw WSGI", "gunicorn gthread"): [run(8.0, 0.5, 80.0)],
    }
    lines = servers_compare.goals(runs, {})
    assert "| raw WSGI, CPython inline, x granian | >= 0.6 | 0.64 | 0.80 | 0.50 | - | - | yes |" \
        in lines
    assert "| raw WSGI, CPython inline, x gunicorn | >= 4.0 | 4.00 | 4.00 | 2.00 | - | - " \
        "| **no** |" in lines  # p99 worse than the peer's
    assert "| Flask, CPython inline, x gunicorn | >= 2.5 | - | - | - | - | - | not measured |" \
        in lines
    # Measured at the same offered load, that p99 decides.
    rate = {"p50": 0.1, "p99": 1.0, "p999": 2.0, "missing": 0}
    equal = {"raw WSGI, CPython inline, x gunicorn": (6000.0, [rate], [dict(rate, p99=4.0)])}
    lines = servers_compare.goals(runs, equal)
    assert "| raw WSGI, CPython inline, x gunicorn | >= 4.0 | 4.00 | 4.00 | 2.00 " \
        "| 0.25 at 6,000/s | - | yes |" in lines
    assert "| raw WSGI, CPython inline, x gunicorn | 6,000 | 0.10 / 1.00 / 2.00 " \
        "| 0.10 / 4.00 / 2.00 | 0, 0 |" in lines
    # The WebSocket goals show what the same Mongoose in C reaches.
    runs[("ws 32 B", "ours PyPy, Manager @handles")] = [run(110.0, 0.5, 9.0)]
    runs[("ws 32 B", "picows")] = [run(100.0, 0.5, 9.5)]
    runs[("ws 32 B", servers_compare.C_MONGOOSE)] = [run(101.0, 0.4, 9.4)]
    assert "| WS echo 32 B, PyPy Manager, x picows | >= 1.2 | 1.10 | 1.06 | 1.00 | - | 1.01 " \
        "| **no** (C Mongoose is below the target too) |" in servers_compare.goals(runs, {})
    table = servers_compare.table(runs, {}, {}, {})
    assert any(line.startswith("| ws 32 B | picows | 100 | ±0% | 0.50 | 9.50 | 97% |")
               for line in table)


def test_idle_server_measures_its_connections() -> None:
    port = _load.free_port()
    proc = start("idle.py", "declared", str(port), "5", "50")
    socks = []
    try:
        read_line(proc, "READY")
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        ns = float(read_line(proc, "RESULT"))
        assert ns > 0
        assert proc.wait(10) == 0
    finally:
        for s in socks:
            s.close()
        stop(proc)


def test_wrk_latencies_are_read_in_milliseconds() -> None:
    assert _load._ms("250.00us") == pytest.approx(0.25)
    assert _load._ms("1.50ms") == pytest.approx(1.5)
    assert _load._ms("2.00s") == pytest.approx(2000.0)
    with pytest.raises(_load.BenchError):
        _load._ms("fast")


def run(rate: float, p99: float, cpu: float) -> dict:
    return {"rate": rate, "p50": p99 / 2, "p99": p99, "cpu_us": cpu, "errors": 0,
            "load_share": 0.97}


def test_tables_give_ratios_to_c_and_to_the_cython_package() -> None:
    runs = {
        ("http c=50", "c"): [run(100.0, 1.0, 5.0), run(120.0, 1.0, 5.0), run(110.0, 1.0, 5.0)],
        ("http c=50", "cython"): [run(55.0, 2.0, 8.0)],
        ("http c=50", "cpy-declared"): [run(66.0, 1.2, 6.5)],
    }
    table = _report.load_table(runs)
    assert "| http c=50 | C Mongoose | 110 | 1.00 | 2.00 |" in table
    assert "| http c=50 | ours CPython, declared | 66 | 0.60 | 1.20 |" in table
    idle = {("c", "-"): [10.0], ("cpy", "declared"): [12.0], ("cpy", "plain"): [130.0],
            ("cython", "plain"): [150.0]}
    goals = _report.goals_table(runs, idle)
    assert "| CPython declared, HTTP c=50 req/s, x Cython | >= 1.20 | 1.20 | 2.00 | yes |" in goals
    assert "| CPython declared, CPU us/req above C (c=50) | <= 1.50 | 1.50 | - | yes |" in goals
    assert "| CPython declared, p99 at c=50, x C | <= 1.20 | 1.20 | - | yes |" in goals
    assert "| CPython, idle conn not wanting POLL, x C | <= 1.50 | 1.20 | - | yes |" in goals
    # A plain handler's idle connections compare with the Cython package's.
    assert "| CPython, idle conn, plain handler, x Cython | <= 1.00 | 0.87 | - | yes |" in goals
    assert "| PyPy, idle conn, plain handler, x Cython | <= 0.50 | - | - | not measured |" in goals
    assert "| PyPy declared, HTTP c=50 req/s, x Cython | >= 1.40 | - | 2.00 | not measured |" in goals


def test_readme_results_section_is_replaced_in_place(tmp_path) -> None:
    path = str(tmp_path / "README.md")
    with open(path, "w") as f:
        f.write("# Benchmarks\n\nprose\n\n%s\nold table\n%s\n\nmore prose\n"
                % (_report.BEGIN, _report.END))
    _report.write_readme(path, "new table\n")
    _report.write_readme(path, "newer table\n")
    with open(path) as f:
        text = f.read()
    assert text == ("# Benchmarks\n\nprose\n\n%s\nnewer table\n%s\n\nmore prose\n"
                    % (_report.BEGIN, _report.END))


def test_ws_load_is_told_the_size_and_depth_only_when_they_differ_from_its_defaults() -> None:
    url = "ws://127.0.0.1:8000/"
    assert _load.ws_command("ws_load", 8000, 50, 5, pin=False) == ["ws_load", url, "50", "5"]
    assert _load.ws_command("ws_load", 8000, 50, 5, pin=False, size=16384)[4:] == ["16384"]
    assert _load.ws_command("ws_load", 8000, 50, 5, pin=False, depth=8)[4:] == ["32", "8"]


def test_the_pipelined_websocket_test_has_goals_of_its_own() -> None:
    import servers_compare

    load = "ws" + servers_compare.WS_PIPELINED
    runs = {(load, "ours PyPy, Manager @handles"): [run(600.0, 0.5, 1.0)],
            (load, "picows"): [run(200.0, 2.0, 5.0)]}
    assert "| WS echo 32 B, 8 in flight, PyPy Manager, x picows | >= 1.2 | 3.00 | 5.00 | 0.25 " \
        "| - | - | yes |" in servers_compare.goals(runs, {})
    assert any(line.startswith("| %s | picows | 200 |" % load)
               for line in servers_compare.table(runs, {}, {}, {}))


def test_same_load_rows_compare_cpu_per_request_and_their_spread_is_of_cpu() -> None:
    import run as bench_run

    runs = {
        ("http c=50", "cython"): [run(90000.0, 1.0, 9.0)],
        ("http c=50", "pypy-declared"): [run(120000.0, 0.5, 7.0)],
        (_report.SAME_LOAD, "cython"): [run(45000.0, 1.0, 18.0), run(45000.0, 1.0, 22.0)],
        (_report.SAME_LOAD, "pypy-declared"): [run(45000.0, 0.2, 10.0),
                                               run(45000.0, 0.2, 10.0)],
    }
    # half the slowest server's wrk rate, in thousands
    assert bench_run.same_load_rate(runs, ["cython", "pypy-declared"]) == 45000.0
    goals = _report.goals_table(runs, {})
    # wrk's req/s misses the goal where CPU per request at one load meets it
    assert "| PyPy declared, HTTP c=50 req/s, x Cython | >= 1.40 | 1.33 | - | **no** |" in goals
    assert "| PyPy declared, CPU us/req at the same load, Cython / ours | >= 1.40 | 2.00 " \
        "| - | yes |" in goals
    # Where the C server's own ratio is below a req/s target, the row says so.
    runs[("http c=50", "c")] = [run(117000.0, 0.5, 6.0)]
    assert "| PyPy declared, HTTP c=50 req/s, x Cython | >= 1.40 | 1.33 | 1.30 | **no** " \
        "(C Mongoose is below the target too) |" in _report.goals_table(runs, {})
    table = _report.load_table(runs)
    assert "| %s | Cython 0.2.5 (CPython) | 45,000 |" % _report.SAME_LOAD in table
    assert table.splitlines()[-2].endswith("| ±10% |")  # CPU 18 to 22 us, not req/s


def test_only_websocket_tests_with_one_message_in_flight_are_run_again_at_the_same_load() -> None:
    import servers_compare

    # ws_rate keeps one message in flight: nothing to run for the pipelined test,
    # whatever the servers and runs.
    args = type("Args", (), {"rounds": 1, "duration": 1.0})()
    assert servers_compare.equal_load("ws" + servers_compare.WS_PIPELINED, {}, {}, args,
                                      False) == {}
