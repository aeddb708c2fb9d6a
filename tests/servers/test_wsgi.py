"""cymongoose.wsgi: a Flask app and plain WSGI apps served for real, driven
by httpx and raw sockets."""

import gc
import hashlib
import io
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from wsgiref.validate import validator

import httpx
import pytest

from cymongoose._wsgi_environ import build_environ as _build_environ
from cymongoose.wsgi import FileWrapper, WSGIServer
from support.loop import wait_until
from support.servers import (WsgiThread, check_form_and_10mib_upload, count_responses, raw_exchange,
                             started)
from support.sockets import read_until

flask = pytest.importorskip("flask")

MiB = 1024 * 1024


@pytest.fixture
def start():
    """``start(app, **options)`` serves a WSGI app; all stop at teardown."""
    yield from started(WsgiThread)


def make_flask_app(gate: threading.Event, ports: list) -> "flask.Flask":
    app = flask.Flask("wsgi_test")

    @app.before_request
    def remember_port():
        ports.append(flask.request.environ["REMOTE_PORT"])

    @app.route("/")
    def index():
        return "hello"

    @app.route("/items/<int:item>")
    def item(item):
        return flask.jsonify(item=item, q=flask.request.args.get("q"))

    @app.route("/json", methods=["POST"])
    def echo_json():
        data = flask.request.get_json()
        return flask.jsonify(received=data, count=len(data))

    @app.route("/form", methods=["POST"])
    def form():
        return "name=%s age=%s" % (flask.request.form["name"], flask.request.form["age"])

    @app.route("/upload", methods=["POST"])
    def upload():
        f = flask.request.files["file"]
        data = f.read()
        return flask.jsonify(name=f.filename, size=len(data),
                             sha256=hashlib.sha256(data).hexdigest())

    @app.route("/stream")
    def stream():
        def gen():
            yield "first\n"
            gate.wait(10)  # the client has read "first" before this ends
            yield "second\n"
        return flask.Response(gen(), mimetype="text/plain")

    @app.route("/fail")
    def fail():
        raise RuntimeError("flask route failed")

    @app.route("/file")
    def file():
        return flask.send_file(io.BytesIO(b"0123456789" * 5000), mimetype="application/x-test")

    return app


@pytest.fixture
def flask_server(start):
    gate = threading.Event()
    ports: list = []
    srv = start(make_flask_app(gate, ports), workers=4)
    srv.gate = gate
    srv.ports = ports
    yield srv
    gate.set()


def test_flask_routes_json_and_404(flask_server):
    with httpx.Client(base_url=flask_server.url, timeout=10) as c:
        r = c.get("/")
        assert (r.status_code, r.text) == (200, "hello")
        assert r.headers["content-length"] == "5"
        assert r.headers["content-type"].startswith("text/html")
        r = c.get("/items/42", params={"q": "a b/ü"})
        assert r.json() == {"item": 42, "q": "a b/ü"}
        r = c.post("/json", json={"a": [1, 2, 3], "b": "ü"})
        assert r.json() == {"received": {"a": [1, 2, 3], "b": "ü"}, "count": 2}
        r = c.get("/missing")
        assert r.status_code == 404
        r = c.get("/fail")
        assert r.status_code == 500
        r = c.get("/")
        assert r.status_code == 200  # still serving


def test_flask_form_and_10mib_upload(flask_server):
    check_form_and_10mib_upload(flask_server.url)


def test_flask_streaming_is_read_incrementally(flask_server):
    with httpx.Client(base_url=flask_server.url, timeout=10) as c:
        with c.stream("GET", "/stream") as r:
            assert r.headers["transfer-encoding"] == "chunked"
            pieces = r.iter_raw()
            # The generator is still blocked on the gate: this chunk was
            # sent as soon as it was produced.
            assert next(pieces) == b"first\n"
            flask_server.gate.set()
            assert b"".join(pieces) == b"second\n"


def test_flask_send_file_uses_file_wrapper(flask_server):
    r = httpx.get(flask_server.url + "/file", timeout=10)
    assert r.content == b"0123456789" * 5000
    assert r.headers["content-type"] == "application/x-test"


def test_100_keep_alive_requests_on_one_connection(flask_server):
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=flask_server.url, limits=limits, timeout=10) as c:
        bodies = [c.get("/").text for _ in range(100)]
    assert bodies == ["hello"] * 100
    assert len(flask_server.ports) == 100
    assert len(set(flask_server.ports)) == 1  # one client connection served them all


def test_50_concurrent_clients(flask_server):
    def client(i):
        with httpx.Client(base_url=flask_server.url, timeout=30) as c:
            a = c.get("/items/%d" % i).json()["item"]
            b = c.post("/json", json=[i]).json()["received"]
            return a, b

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert results == [(i, [i]) for i in range(50)]


def test_workers_run_requests_in_parallel_up_to_the_pool_size(start):
    lock = threading.Lock()
    running = [0, 0]  # now, peak
    threads = set()
    release = threading.Event()

    def app(environ, start_response):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            threads.add(threading.get_ident())
        release.wait(20)  # blocks its worker until the test has looked
        with lock:
            running[0] -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    srv = start(app, workers=3)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(httpx.get, srv.url + "/%d" % i, timeout=30) for i in range(6)]
        try:
            # All six requests reached the server; three run, three wait for a worker.
            wait_until(lambda: srv.server._core.in_flight == 6 and running[0] == 3)
            assert running == [3, 3]
        finally:
            release.set()
        assert [f.result().text for f in futures] == ["/%d" % i for i in range(6)]
    assert running == [0, 3]
    # The pool's three threads, and the poll thread for requests that found
    # the pool idle (it counts against the same three slots).
    assert len(threads - {srv.thread.ident}) <= 3 and threading.get_ident() not in threads


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
def test_pool_threads_run_under_sched_batch_and_inline_apps_keep_the_callers_policy(start):
    # A woken worker must not preempt the poll thread that holds the GIL.
    # The first request may run on the poll thread (it finds the pool
    # idle); while it blocks, the second goes to a worker.
    first_runs, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/first":
            first_runs.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("%s %s" % (threading.current_thread().name,
                            os.sched_getscheduler(0))).encode()]

    pooled, inline = start(app, workers=2), start(app, workers=0)
    with ThreadPoolExecutor(1) as ex:
        first = ex.submit(httpx.get, pooled.url + "/first", timeout=10)
        try:
            assert first_runs.wait(10)
            name, policy = httpx.get(pooled.url + "/second", timeout=10).text.rsplit(" ", 1)
        finally:
            release.set()
        first.result()
    assert name.startswith("cymongoose-wsgi-") and policy == str(os.SCHED_BATCH)
    assert httpx.get(inline.url + "/", timeout=10).text.rsplit(" ", 1)[1] == str(os.SCHED_OTHER)


def test_requests_one_poll_brings_to_an_idle_pool_run_on_the_poll_thread_and_are_answered(start):
    # The poll thread holds the responses of such a batch for the poll after
    # it, which must write them: with poll_ms=60000 no poll timeout would.
    ran_on = []

    def app(environ, start_response):
        ran_on.append(threading.current_thread().name)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    srv = start(app, workers=2, poll_ms=60000)
    assert httpx.get(srv.url + "/warm", timeout=10).text == "/warm"
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(2)]
    try:
        sent = threading.Event()
        # A call the poll thread runs inside a poll: the requests sent
        # meanwhile are all readable when its next poll waits for I/O.
        srv.server.manager.call_soon_threadsafe(lambda: sent.wait(10))
        for i, s in enumerate(socks):
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        sent.set()
        for i, s in enumerate(socks):
            reply = read_until(s, lambda b, i=i: b.endswith(b"/%d" % i), timeout=5)
            assert reply.startswith(b"HTTP/1.1 200")
    finally:
        for s in socks:
            s.close()
    assert ran_on == [srv.thread.name] * 3


@pytest.mark.parametrize("waits", [True, False], ids=["waits", "computes"])
def test_a_request_the_poll_thread_runs_may_block_while_others_are_served(start, waits):
    # A lone request finds the pool idle and runs on the poll thread; when
    # it blocks, the standby polls in its place and a worker serves the
    # next one, which is what unblocks the first.  An application that
    # computes (in Python, so the GIL changes hands every switch interval)
    # never sleeps: the standby takes over from a poll thread that runs
    # after some ticks with nothing finished (_csrc/park.c).
    second_done = threading.Event()
    ran_on = {}

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        ran_on[path] = threading.current_thread().name
        if path != "/first":
            second_done.set()
        elif waits:
            assert second_done.wait(10)
        else:
            deadline = time.monotonic() + 10
            while not second_done.is_set():
                assert time.monotonic() < deadline
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path.encode()]

    srv = start(app, workers=2, poll_ms=60000)  # no poll timeout can help
    with ThreadPoolExecutor(1) as ex:
        first = ex.submit(httpx.get, srv.url + "/first", timeout=15)
        wait_until(lambda: "/first" in ran_on)
        assert httpx.get(srv.url + "/second", timeout=10).text == "/second"
        assert first.result().text == "/first"
    assert ran_on["/first"] == srv.thread.name
    assert ran_on["/second"].startswith("cymongoose-wsgi-")
    # Back on the poll thread: the next lone request is its own again.
    assert httpx.get(srv.url + "/third", timeout=10).text == "/third"


@pytest.mark.parametrize("logged", [False, True], ids=["no-access-log", "access-log"])
def test_worker_responses_need_no_poll_timeout_to_leave_or_close(start, caplog, logged):
    # A worker writes a whole response itself while the poll thread waits
    # (_csrc/park.c); what is left to do then (close after the response,
    # parse a pipelined request) must wake the poll thread, not wait for
    # its timeout, here a minute.
    if logged:
        caplog.set_level(logging.INFO, logger="cymongoose.access")

    def app(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = start(app, workers=2, poll_ms=60_000)
    for i in range(5):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /c%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i)
            got = b""
            while True:
                data = s.recv(65536)  # socket.timeout after 10 s fails the test
                if not data:
                    break
                got += data
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"/c%d" % i)
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    got = raw_exchange(srv.port, reqs, lambda d: count_responses(d) == 5)
    assert [part.split(b"\r\n\r\n", 1)[1] for part in got.split(b"HTTP/1.1 ")[1:]] == \
        [b"/p%d" % i for i in range(5)]


def test_pipelined_requests_are_answered_in_order(start):
    def app(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = start(app)
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    reqs += b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    got = raw_exchange(srv.port, reqs, lambda d: count_responses(d) == 6 and d.endswith(b"/post"))
    assert count_responses(got) == 6
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in got.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/post"]


def test_wsgiref_validator_finds_nothing(start):
    def inner(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.errors"].write("")
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/gen":
            return (piece for piece in [b"a", b"b", b"c"])
        return [b"got:", body]

    srv = start(validator(inner))
    # The validator reports an iterable collected without close() from __del__,
    # where only sys.unraisablehook sees it.
    unraisable = []
    # Garbage that earlier tests left (PyPy collects late) would warn here.
    gc.collect()
    gc.collect()
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with httpx.Client(base_url=srv.url, timeout=10) as c:
                assert c.get("/x?y=1").text == "got:"
                assert c.post("/p", content=b"payload").text == "got:payload"
                assert c.post("/p", content=iter([b"chun", b"ked"])).text == "got:chunked"
                assert c.get("/gen").text == "abc"
                assert c.head("/x").status_code == 200
            wait_until(lambda: srv.server._core.in_flight == 0)
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [str(w.message) for w in caught] == []
    assert [repr(u.exc_value) for u in unraisable] == []


def test_environ_is_complete(start):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return []

    srv = start(app)
    r = httpx.post(srv.url + "/a%20b/c%C3%BC?x=1&y=%20", content=b"data",
                   headers={"X-One": "1", "Content-Type": "text/x-test", "X_Spoof": "no"},
                   timeout=10)
    assert r.status_code == 200
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == ""
    assert seen["PATH_INFO"] == "/a b/c\u00c3\u00bc"  # PEP 3333: bytes as latin-1
    assert seen["QUERY_STRING"] == "x=1&y=%20"
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(srv.port)
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert int(seen["REMOTE_PORT"]) > 0
    assert seen["CONTENT_TYPE"] == "text/x-test"
    assert seen["CONTENT_LENGTH"] == "4"
    assert seen["HTTP_X_ONE"] == "1"
    assert "HTTP_X_SPOOF" not in seen  # names with "_" are dropped
    assert "HTTP_CONTENT_TYPE" not in seen
    assert seen["HTTP_HOST"] == "127.0.0.1:%d" % srv.port
    assert seen["body"] == b"data"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is True and seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False
    assert seen["wsgi.file_wrapper"] is FileWrapper
    assert hasattr(seen["wsgi.errors"], "write")


def test_environ_keys_of_repeated_mixed_case_and_many_headers(start):
    seen = []

    def app(environ, start_response):
        seen.append(environ)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = start(app)
    many = "".join("X-H%d: v%d\r\n" % (i, i) for i in range(90))
    heads = [
        # Each key once: the head's one C copy gives the keys.
        "x-lower-case: 1\r\nCONTENT-type: a/b\r\n" + many,
        # A repeated key (in another case, too) takes the joined values.
        "Accept: a\r\nX-Other: o\r\naccept: b\r\nACCEPT: c\r\nX_Gone: z\r\n",
    ]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        for head in heads:
            s.sendall(("GET / HTTP/1.1\r\nHost: h\r\n" + head + "\r\n").encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, "connection closed"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
    first, second = seen
    assert first["HTTP_X_LOWER_CASE"] == "1"
    assert first["CONTENT_TYPE"] == "a/b" and "HTTP_CONTENT_TYPE" not in first
    assert [first["HTTP_X_H%d" % i] for i in range(90)] == ["v%d" % i for i in range(90)]
    assert second["HTTP_ACCEPT"] == "a, b, c"
    assert second["HTTP_X_OTHER"] == "o" and second["HTTP_HOST"] == "h"
    assert not [k for k in second if "GONE" in k]


def test_build_environ_accepts_duck_typed_objects():
    class Hm:
        method, uri, query, proto, body_bytes = "GET", "/p%2Fq?a=1", "", "", b"xyz"

        def header(self, name, default=None):
            return default

        def headers(self):
            return [("Accept", "a"), ("accept", "b"), ("Content-Length", "3")]

    class Conn:
        is_tls = True
        remote_addr = ("10.0.0.1", 5000, False)

    env = _build_environ(Hm(), Conn(), "example", 8080)
    assert env["PATH_INFO"] == "/p/q"
    assert env["QUERY_STRING"] == "a=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_ACCEPT"] == "a, b"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == "8080"
    assert env["REMOTE_ADDR"] == "10.0.0.1"
    assert env["wsgi.input"].read() == b"xyz"


def test_app_error_is_500_logged_and_server_keeps_serving(start, caplog):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("app exploded")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    srv = start(app)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.get("/boom")
        assert (r.status_code, r.text) == (500, "Internal Server Error")
        assert c.get("/").text == "fine"  # same connection, still served
    records = [r for r in caplog.records if r.name == "cymongoose.wsgi"]
    assert records and records[0].levelname == "ERROR"
    assert "app exploded" in caplog.text and "Traceback" in caplog.text


def test_error_after_streaming_started_truncates(start):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"partial"
            raise RuntimeError("mid-stream")
        return gen()

    srv = start(app)
    got = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", lambda d: False)
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert b"partial" in got and not got.endswith(b"0\r\n\r\n")  # no terminating chunk


def test_start_response_exc_info_replaces_the_status(start):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("late")
        except KeyError:
            start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"try later"]

    srv = start(app)
    r = httpx.get(srv.url, timeout=10)
    assert (r.status_code, r.reason_phrase, r.text) == (503, "Busy", "try later")


def test_start_response_rules_after_the_head_was_sent(start):
    seen = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("200 OK", [])
        except AssertionError as exc:  # PEP 3333: a second call needs exc_info
            seen.append(str(exc))
        write(b"partial")  # the head goes out with this
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
            except KeyError as exc:  # too late to change the status: re-raised
                seen.append(repr(exc))
        return [b" rest"]

    srv = start(app)
    r = httpx.get(srv.url, timeout=10)
    assert (r.status_code, r.text) == (200, "partial rest")
    assert seen == ["start_response called twice without exc_info", "KeyError('late')"]


def test_write_callable_and_close_is_called(start):
    closed = threading.Event()

    class Body:
        def __iter__(self):
            yield b" world"

        def close(self):
            closed.set()

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"hello")
        return Body()

    srv = start(app)
    assert httpx.get(srv.url, timeout=10).text == "hello world"
    assert closed.wait(10)  # called once the response is out: it may be after the client has it


@pytest.mark.parametrize("workers", [0, 2])
def test_iterable_bodies_follow_their_content_length(start, workers):
    pulled = []
    closed = []

    class Body:
        """Pieces after the declared length are never pulled or sent."""

        def __init__(self, pieces):
            self.pieces = pieces

        def __iter__(self):
            for piece in self.pieces:
                pulled.append(piece)
                yield piece

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/exact":
            start_response("200 OK", [("Content-Length", "5")])
            return Body([b"hello", b"EXTRA"])
        if path == "/short-first":
            start_response("200 OK", [("Content-Length", "11")])
            return Body([b"hello", b" world", b"EXTRA"])
        start_response("200 OK", [])  # no length: chunked
        return Body([b"a", b"b"])

    srv = start(app, workers=workers)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.get("/exact")
        assert (r.text, r.headers["content-length"]) == ("hello", "5")
        assert pulled == [b"hello"]
        r = c.get("/short-first")
        assert r.text == "hello world" and b"EXTRA" not in r.content
        r = c.get("/chunked")
        assert (r.text, r.headers["transfer-encoding"]) == ("ab", "chunked")
        r = c.head("/exact")
        assert r.headers["content-length"] == "5" and r.content == b""
        assert c.get("/exact").text == "hello"  # the connection is still in step
    # Each close() follows its response out, so the last may come after the client has it.
    wait_until(lambda: len(closed) >= 5, 10)
    assert len(closed) == 5


def test_request_body_limit_gives_413(start):
    calls = []

    def app(environ, start_response):
        calls.append(1)
        start_response("200 OK", [])
        return [b"ok"]

    srv = start(app, max_body_size=1000)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.post("/", content=b"x" * 1000).text == "ok"
        r = c.post("/", content=b"x" * 5000)
        assert r.status_code == 413
    r = httpx.post(srv.url, content=iter([b"x" * 800, b"x" * 800]), timeout=10)  # chunked
    assert r.status_code == 413
    assert calls == [1]


def test_expect_100_continue_and_http10(start):
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (piece for piece in [b"len=", str(len(body)).encode()])

    srv = start(app)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert read_until(s, lambda d: d.endswith(b"\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abcd")
        got = read_until(s, lambda d: d.endswith(b"0\r\n\r\n"))
        assert b"Transfer-Encoding: chunked" in got and b"len=" in got
    # HTTP/1.0 without keep-alive: no chunking, the body ends with the connection.
    got = raw_exchange(srv.port, b"GET / HTTP/1.0\r\n\r\n", lambda d: False)
    head, body = got.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head and b"Connection: close" in head
    assert body == b"len=0"
    got = raw_exchange(srv.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       lambda d: False)
    assert got.endswith(b"\r\n\r\n") and b"len=" not in got


def test_client_disconnect_mid_stream_closes_the_iterable(start):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def gen():
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()
        return gen()

    srv = start(app)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(s, lambda d: len(d) > 200000)
    wait_until(closed.is_set)
    mgr = srv.server.manager
    wait_until(lambda: len(mgr.connections) == 1)  # only the listener is left
    assert srv.server._core.in_flight == 0


@pytest.mark.parametrize("workers", [4, 0], ids=["pool", "inline"])
def test_stalled_client_is_cut_off_after_stream_timeout(start, workers):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])

        def gen():
            try:
                for _ in range(1024):
                    yield b"y" * 65536
            finally:
                closed.set()
        return gen()

    srv = start(app, stream_timeout=0.3, workers=workers)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(closed.is_set)  # while this client reads nothing
    wait_until(lambda: srv.server._core.in_flight == 0)


def test_stop_finishes_in_flight_requests_and_refuses_new_ones():
    gate = threading.Event()
    started = threading.Event()

    def app(environ, start_response):
        started.set()
        gate.wait(10)
        start_response("200 OK", [])
        return [b"finished"]

    srv = WsgiThread(app)
    result = []
    t = threading.Thread(target=lambda: result.append(httpx.get(srv.url, timeout=10)))
    t.start()
    try:
        wait_until(started.is_set)
        srv.server.stop()

        def refused():
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                pass  # caught in the listen backlog as the listener closed
            return False
        wait_until(refused)
        assert srv.thread.is_alive()  # still waiting for the request in flight
    finally:
        gate.set()
        t.join(10)
        srv.thread.join(10)
    assert result[0].text == "finished"
    assert not srv.thread.is_alive()


def test_server_api_errors():
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ValueError):
            WSGIServer(lambda e, s: [], workers=bad)
    srv = WSGIServer(lambda e, s: [])
    try:
        srv.listen("http://127.0.0.1:0")
        port = srv.manager.connections[0].local_addr[1]
        other = WSGIServer(lambda e, s: [])
        with pytest.raises(RuntimeError):
            other.listen("http://127.0.0.1:%d" % port)
        other.close()
    finally:
        srv.close()
    srv.close()  # idempotent


def test_json_roundtrip_with_plain_app(start):
    def app(environ, start_response):
        data = json.loads(environ["wsgi.input"].read() or b"null")
        body = json.dumps({"echo": data}).encode()
        start_response("201 Created", [("Content-Type", "application/json"),
                                       ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [body]

    srv = start(app)
    r = httpx.post(srv.url, json={"k": [1, None]}, timeout=10)
    assert r.status_code == 201 and r.json() == {"echo": {"k": [1, None]}}
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_file_wrapper_iterates_blocks_and_closes(start):
    class Source(io.StringIO):
        closed_by_server = False

        def close(self):
            Source.closed_by_server = True
            super().close()

    wrapper = FileWrapper(io.BytesIO(b"abcdefgh"), 3)
    assert list(wrapper) == [b"abc", b"def", b"gh"]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](Source("text ü " * 1000), 100)

    srv = start(app)
    r = httpx.get(srv.url, timeout=10)
    assert r.text == "text ü " * 1000
    assert Source.closed_by_server


# -- inline mode (workers=0): the app runs on the poll thread ----------------


def test_inline_serves_keep_alive_pipelining_errors_and_files(start):
    threads = []

    def app(environ, start_response):
        threads.append(threading.current_thread())
        path = environ["PATH_INFO"]
        if path == "/fail":
            raise RuntimeError("inline app failed")
        if path == "/file":
            start_response("200 OK", [("Content-Type", "application/x-test")])
            return environ["wsgi.file_wrapper"](io.BytesIO(b"0123456789" * 5000), 4096)
        if path == "/busy":  # the app's own reason phrase, on the one-write path
            start_response("503 Busy", [("Content-Type", "text/plain")])
            return [b"try later"]
        if path == "/late":  # start_response as late as the first piece
            def gen():
                start_response("200 OK", [])
                yield b"late"
            return gen()
        body = ("%s %s" % (path, environ["wsgi.multithread"])).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    srv = start(app, workers=0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.get("/a")
        assert (r.status_code, r.text, r.headers["content-length"]) == (200, "/a False", "8")
        assert c.get("/fail").status_code == 500
        assert c.get("/b").text == "/b False"  # same connection, still serving
        r = c.get("/file")
        assert r.content == b"0123456789" * 5000
        assert r.headers["transfer-encoding"] == "chunked"
        assert c.get("/late").text == "late"
        r = c.get("/busy")
        assert (r.status_code, r.reason_phrase, r.text) == (503, "Busy", "try later")
    data = raw_exchange(srv.port, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        lambda b: count_responses(b) == 3 and b.endswith(b"/3 False"))
    assert [data.find(b"/%d False" % i) > 0 for i in (1, 2, 3)] == [True] * 3
    assert data.find(b"/1 False") < data.find(b"/2 False") < data.find(b"/3 False")
    assert set(threads) == {srv.thread}


def test_inline_streaming_waits_for_the_client_without_blocking_the_loop(start):
    piece = b"z" * 65536
    count = 512  # 32 MiB: far more than the socket buffers hold
    produced = [0]
    closed = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/small":
            start_response("200 OK", [])
            return [b"small"]
        start_response("200 OK", [("Content-Length", str(len(piece) * count))])

        def gen():
            try:
                for _ in range(count):
                    produced[0] += 1
                    yield piece
            finally:
                closed.set()
        return gen()

    srv = start(app, workers=0, stream_timeout=30)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: produced[0] > 0)
        # The big response waits for this client; others are served meanwhile.
        assert httpx.get(srv.url + "/small", timeout=10).text == "small"
        assert produced[0] < count
        assert not closed.is_set()
        size = len(piece) * count
        received = bytearray()
        while True:
            end = received.find(b"\r\n\r\n")
            if end >= 0 and len(received) - end - 4 >= size:
                break
            got = s.recv(1 << 20)
            if not got:
                break
            received += got
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert len(body) == size and body.count(b"z") == size
    wait_until(closed.is_set)


def test_inline_client_gone_mid_stream_closes_the_iterable(start):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])

        def gen():
            try:
                while True:
                    yield b"w" * 65536
            finally:
                closed.set()
        return gen()

    srv = start(app, workers=0)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1024)
    wait_until(closed.is_set)
    wait_until(lambda: srv.server._core.in_flight == 0)
