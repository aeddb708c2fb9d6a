"""Bad arguments raise clear Python exceptions (data-like arguments go through
bytes(), str arguments must be str); nothing crashes or hangs."""

import signal

import pytest

import cymongoose as cm
from support.http_raw import get_close, parse_response, raw_request
from support.loop import InThread, poll_until

FREED = "Manager has been freed"


def str_type_error(name, got):
    return "Argument '%s' has incorrect type (expected str, got %s)" % (name, got)


NONE_BYTES = "cannot convert 'NoneType' object to bytes"
NOT_VALID = "HttpMessage is not valid for this event"

# (id, call on a live connection and its live request, exception, exact message or None)
LIVE_CASES = [
    ("send-None", lambda c, hm: c.send(None), TypeError, NONE_BYTES),
    ("send-object", lambda c, hm: c.send(object()), TypeError, None),
    ("send-float", lambda c, hm: c.send(1.5), TypeError, None),
    ("send-negative", lambda c, hm: c.send(-1), ValueError, None),
    ("send-surrogate", lambda c, hm: c.send("\ud800"), UnicodeEncodeError, None),
    ("reply-status-None", lambda c, hm: c.reply(None), TypeError, None),
    ("reply-status-str", lambda c, hm: c.reply("200"), TypeError, None),
    ("reply-status-huge", lambda c, hm: c.reply(2**31), OverflowError, None),
    ("reply-status-negative-huge", lambda c, hm: c.reply(-2**31 - 1), OverflowError, None),
    ("reply-body-None", lambda c, hm: c.reply(200, None), TypeError, NONE_BYTES),
    ("reply-headers-list", lambda c, hm: c.reply(200, "", [("A", "b")]), AttributeError, None),
    ("reply-headers-str", lambda c, hm: c.reply(200, "", "A: b"), AttributeError, None),
    ("reply-headers-int-key", lambda c, hm: c.reply(200, "", {1: "b"}), AttributeError, None),
    ("reply-header-cr", lambda c, hm: c.reply(200, "", {"A": "b\r"}), ValueError,
     "Header value contains illegal character (CR, LF, or NUL): 'b\\r'"),
    ("reply_json-unserialisable", lambda c, hm: c.reply_json(object()), TypeError, None),
    ("reply_json-status-None", lambda c, hm: c.reply_json({}, None), TypeError, None),
    ("reply_json-headers-int", lambda c, hm: c.reply_json({}, 200, 5), TypeError, None),
    ("reply_json-bad-header",
     lambda c, hm: c.reply_json([1], 200, {"X\n": "1"}), ValueError, None),
    ("http_chunk-None", lambda c, hm: c.http_chunk(None), TypeError, NONE_BYTES),
    ("http_sse-type-None", lambda c, hm: c.http_sse(None, "d"), TypeError,
     str_type_error("event_type", "NoneType")),
    ("http_sse-data-bytes", lambda c, hm: c.http_sse("e", b"d"), TypeError,
     str_type_error("data", "bytes")),
    ("basic_auth-user-bytes", lambda c, hm: c.http_basic_auth(b"u", "p"), TypeError,
     str_type_error("username", "bytes")),
    ("basic_auth-pass-None", lambda c, hm: c.http_basic_auth("u", None), TypeError,
     str_type_error("password", "NoneType")),
    ("serve_dir-message-str", lambda c, hm: c.serve_dir("GET /", "."), TypeError,
     "Argument 'message' has incorrect type (expected HttpMessage, got str)"),
    ("serve_dir-message-None", lambda c, hm: c.serve_dir(None, "."), ValueError, NOT_VALID),
    ("serve_dir-message-unbound", lambda c, hm: c.serve_dir(cm.HttpMessage(), "."),
     ValueError, NOT_VALID),
    ("serve_dir-root-None", lambda c, hm: c.serve_dir(hm, None), TypeError,
     str_type_error("root_dir", "NoneType")),
    ("serve_dir-root-bytes", lambda c, hm: c.serve_dir(hm, b"."), TypeError,
     str_type_error("root_dir", "bytes")),
    ("serve_dir-extra-None", lambda c, hm: c.serve_dir(hm, ".", None), TypeError, None),
    ("serve_dir-mime-int", lambda c, hm: c.serve_dir(hm, ".", "", 5), TypeError, None),
    ("serve_file-path-None", lambda c, hm: c.serve_file(hm, None), TypeError,
     str_type_error("path", "NoneType")),
    ("serve_file-message-dict", lambda c, hm: c.serve_file({}, "x"), TypeError, None),
    ("recv_data-None", lambda c, hm: c.recv_data(None), TypeError, None),
    ("recv_data-str", lambda c, hm: c.recv_data("1"), TypeError, None),
    ("send_data-float", lambda c, hm: c.send_data(1.5), TypeError, None),
    ("error-None", lambda c, hm: c.error(None), TypeError, str_type_error("message", "NoneType")),
    ("error-bytes", lambda c, hm: c.error(b"x"), TypeError, str_type_error("message", "bytes")),
    ("header-None", lambda c, hm: hm.header(None), TypeError, str_type_error("name", "NoneType")),
    ("header-bytes", lambda c, hm: hm.header(b"Host"), TypeError, str_type_error("name", "bytes")),
    ("query_var-int", lambda c, hm: hm.query_var(1), TypeError, str_type_error("name", "int")),
    ("header_var-first-None", lambda c, hm: hm.header_var(None, "a"), TypeError,
     str_type_error("header_name", "NoneType")),
    ("header_var-second-bytes", lambda c, hm: hm.header_var("Host", b"a"), TypeError,
     str_type_error("var_name", "bytes")),
]


@pytest.fixture(scope="module")
def live_results():
    """Run every LIVE_CASES call inside one HTTP_MSG handler, then answer normally."""
    results = {}

    def handler(conn, ev, hm):
        if ev != cm.MG_EV_HTTP_MSG:
            return
        for name, call, _, _ in LIVE_CASES:
            before = conn.send_data()
            try:
                call(conn, hm)
                results[name] = ("no error", None, conn.send_data() == before)
            except Exception as exc:
                results[name] = (type(exc), str(exc), conn.send_data() == before)
        results["alive"] = (bool(hm), conn.is_closing)
        conn.reply(200, "survived")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    job = InThread(lambda: get_close(port, "/x?a=1"))
    poll_until(mgr, lambda: job.done)
    results["reply"] = parse_response(job.result())[2]
    mgr.close()
    return results


@pytest.mark.parametrize("name, exc_type, message",
                         [(n, e, m) for n, _, e, m in LIVE_CASES], ids=[c[0] for c in LIVE_CASES])
def test_bad_arguments_on_live_connection(live_results, name, exc_type, message):
    got_type, got_message, nothing_queued = live_results[name]
    assert got_type is exc_type, (got_type, got_message)
    if message is not None:
        assert got_message == message
    assert got_message  # a message that says what is wrong
    assert nothing_queued  # a refused call leaves the send buffer alone


def test_connection_survives_bad_arguments(live_results):
    assert live_results["alive"] == (True, False)
    assert live_results["reply"] == b"survived"


# -- Manager --------------------------------------------------------------------

@pytest.fixture
def mgr():
    m = cm.Manager()
    yield m
    m.close()


def test_manager_constructor_arguments():
    with pytest.raises(TypeError):
        cm.Manager(None, False, None, None)
    with pytest.raises(TypeError):
        cm.Manager(bogus=1)
    cm.Manager(None, 0, None).close()


@pytest.mark.parametrize("method", ["listen", "connect"])
@pytest.mark.parametrize("url, got", [(b"tcp://127.0.0.1:0", "bytes"), (None, "NoneType"),
                                      (8000, "int")])
def test_url_must_be_str(mgr, method, url, got):
    with pytest.raises(TypeError) as info:
        getattr(mgr, method)(url)
    assert str(info.value) == str_type_error("url", got)
    assert mgr.connections == ()


def test_http_flag_is_keyword_only(mgr):
    with pytest.raises(TypeError):
        mgr.listen("tcp://127.0.0.1:0", None, True)


@pytest.mark.parametrize("method, url, message", [
    ("listen", "", "Failed to listen on ''"),
    ("connect", "", "Failed to connect to ''"),
    ("listen", "nonsense", "Failed to listen on 'nonsense'"),
    ("listen", "tcp://256.1.1.1:80", "Failed to listen on 'tcp://256.1.1.1:80'"),
    ("listen", "http://[::1", "Failed to listen on 'http://[::1'"),
])
def test_bad_urls_raise_runtime_error(mgr, method, url, message):
    with pytest.raises(RuntimeError) as info:
        getattr(mgr, method)(url)
    assert str(info.value) == message
    assert mgr.connections == ()


def test_listen_twice_on_same_port(mgr):
    port = mgr.listen("tcp://127.0.0.1:0").local_addr[1]
    with pytest.raises(RuntimeError, match="Failed to listen on"):
        mgr.listen("tcp://127.0.0.1:%d" % port)
    assert len(mgr.connections) == 1


def test_embedded_nul_in_url_ends_it(mgr):
    # C reads a NUL-terminated string: what follows the NUL is ignored.
    lsn = mgr.listen("tcp://127.0.0.1:0\0ignored")
    assert lsn.local_addr[0] == "127.0.0.1"


@pytest.mark.parametrize("value, exc", [(None, TypeError), ("10", TypeError),
                                        (2**31, OverflowError), (-2**31 - 1, OverflowError),
                                        ([], TypeError)])
def test_poll_timeout(mgr, value, exc):
    with pytest.raises(exc):
        mgr.poll(value)
    mgr.poll(1.9)  # floats are truncated, as in 0.2.5


def test_run_with_bad_timeout_restores_signals_and_closes():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    m = cm.Manager()
    with pytest.raises(TypeError):
        m.run(None)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(RuntimeError, match=FREED):
        m.poll(0)


@pytest.mark.parametrize("bad", ["x", -1, True, None, 1.0])
def test_handles_rejects_non_events(bad):
    with pytest.raises(ValueError):
        cm.handles(bad)


# -- closed connections and dead views: argument errors come first --------------

@pytest.mark.parametrize("call, exc", [
    (lambda c: c.reply(200, None), TypeError),
    (lambda c: c.reply(None), TypeError),
    (lambda c: c.reply(200, "", [("a", "b")]), AttributeError),
    (lambda c: c.send(None), TypeError),
    (lambda c: c.http_sse(None, "x"), TypeError),
    (lambda c: c.serve_dir(None, "."), ValueError),
    (lambda c: c.serve_file("x", "."), TypeError),
    (lambda c: c.recv_data(None), TypeError),
    (lambda c: c.error(None), TypeError),
])
def test_argument_errors_before_closed_check(call, exc):
    with pytest.raises(exc):
        call(cm.Connection())


@pytest.mark.parametrize("call", [
    lambda hm: hm.header(None), lambda hm: hm.query_var(None),
    lambda hm: hm.header_var(None, "a"), lambda hm: hm.header_var("a", None),
])
def test_dead_view_still_checks_arguments(call):
    with pytest.raises(TypeError):
        call(cm.HttpMessage())


# -- malformed requests on the wire ---------------------------------------------

@pytest.mark.parametrize("request_bytes", [
    b"\x00\xff garbage\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -5\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
])
def test_malformed_request_ends_only_that_connection(server_factory, request_bytes):
    seen = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen.append(hm.uri)
            conn.reply(200, "ok")

    _, port = server_factory(handler)
    raw = raw_request(port, request_bytes)
    assert b"200 OK" not in raw
    assert parse_response(get_close(port, "/fine"))[2] == b"ok"
    assert seen == ["/fine"]
