"""HTTP server: methods, headers, query variables, bodies, keep-alive, concurrency, IPv6.

Clients are httpx, curl and raw sockets (for exact wire bytes).
"""

import hashlib
import json
import shutil
import subprocess
import threading

import httpx
import pytest

import cymongoose as cm
from support.http_raw import get_close, header_map, parse_response, raw_request
from support.loop import LoopThread, wait_until
from support.sockets import ipv6_loopback

ONE_MIB = 1 << 20


def describe(hm: cm.HttpMessage) -> dict:
    """Everything a test may ask about a request, read inside the handler."""
    return {
        "method": hm.method,
        "uri": hm.uri,
        "query": hm.query,
        "proto": hm.proto,
        "headers": hm.headers(),
        "x_test": hm.header("x-test"),
        "missing": hm.header("X-Missing", "dflt"),
        "status": hm.status(),
        "body_len": len(hm.body_bytes),
        "body_sha": hashlib.sha256(hm.body_bytes).hexdigest(),
    }


def app(conn: cm.Connection, ev: int, hm: object) -> None:
    """/echo returns the body; HEAD gets headers only; anything else a JSON description."""
    if ev != cm.MG_EV_HTTP_MSG:
        return
    assert isinstance(hm, cm.HttpMessage)
    if hm.method == "HEAD":
        conn.reply(200, b"", {"X-Method": "HEAD"})
    elif hm.uri == "/echo":
        conn.reply(200, hm.body_bytes, {"Content-Type": "application/octet-stream",
                                        "X-Method": hm.method, "X-Conn": conn.id})
    else:
        conn.reply_json(describe(hm))


@pytest.fixture
def port(server_factory):
    return server_factory(app)[1]


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


# -- methods, headers, bodies ---------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_methods_with_headers_and_query(port, client, method):
    body = b"payload-" + method.encode() if method in ("POST", "PUT") else b""
    r = client.request(method, "http://127.0.0.1:%d/info/x%%20y?k=v&n=1" % port,
                       headers={"X-Test": "abc", "X-Dup": "1"}, content=body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    info = r.json()
    assert info["method"] == method
    assert info["uri"] == "/info/x%20y"  # still percent-encoded
    assert info["query"] == "k=v&n=1"
    assert info["proto"] == "HTTP/1.1"
    assert info["x_test"] == "abc"
    assert info["missing"] == "dflt"
    assert info["status"] == 0  # requests have no status
    assert ["X-Test", "abc"] in info["headers"]
    assert info["body_len"] == len(body)
    assert info["body_sha"] == hashlib.sha256(body).hexdigest()


def test_head_gets_headers_without_body(port, client):
    r = client.head("http://127.0.0.1:%d/anything" % port)
    assert r.status_code == 200
    assert r.headers["x-method"] == "HEAD"
    assert r.content == b""
    # the keep-alive connection is still in sync afterwards
    assert client.get("http://127.0.0.1:%d/info" % port).json()["method"] == "GET"


@pytest.mark.parametrize("size", [0, 1, 1000, 16384, 65537, ONE_MIB])
def test_body_sizes_round_trip(port, client, size):
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    r = client.post("http://127.0.0.1:%d/echo" % port, content=body)
    assert r.status_code == 200
    assert r.headers["x-method"] == "POST"
    assert int(r.headers["content-length"]) == size
    assert r.content == body


def test_chunked_request_body_is_reassembled(port, client):
    parts = [b"a" * 1000, b"b" * 20000, b"c"]
    r = client.post("http://127.0.0.1:%d/echo" % port, content=iter(parts))
    assert r.content == b"".join(parts)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "HEAD"])
def test_curl_methods(port, tmp_path, method):
    url = "http://127.0.0.1:%d/echo?x=1" % port
    cmd = ["curl", "-sS", "-i", "--max-time", "10", "-H", "X-Test: curl"]
    body = b""
    if method == "HEAD":
        cmd += ["-I"]
    else:
        cmd += ["-X", method]
    if method in ("POST", "PUT"):
        # binary: 1 MiB for POST, an empty body for PUT
        body = bytes(range(256)) * 4096 if method == "POST" else b""
        data = tmp_path / "body.bin"
        data.write_bytes(body)
        cmd += ["--data-binary", "@%s" % data, "-H", "Content-Type: application/octet-stream"]
    out = subprocess.run(cmd + [url], capture_output=True, timeout=20, check=True).stdout
    status, headers, got = parse_response(out)
    assert status == 200
    h = header_map(headers)
    if method == "HEAD":
        assert h["x-method"] == "HEAD" and got == b""
    else:
        assert h["x-method"] == method
        assert got == body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_json_and_headers(port):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H", "X-Test: from-curl",
         "http://127.0.0.1:%d/info?a=1" % port],
        capture_output=True, timeout=20, check=True).stdout
    info = json.loads(out)
    assert info["x_test"] == "from-curl"
    assert info["query"] == "a=1"
    assert info["method"] == "GET"


# -- query variables ------------------------------------------------------------

def query_app(conn: cm.Connection, ev: int, hm: object) -> None:
    if ev != cm.MG_EV_HTTP_MSG:
        return
    out = {}
    for name in ("a", "A", "b", "c", "empty", "missing", "plus", "utf", "ok"):
        out[name] = hm.query_var(name)
    for name in ("bad", "long"):
        try:
            out[name] = ("returned", hm.query_var(name))
        except ValueError as exc:
            out[name] = ("ValueError", str(exc))
    conn.reply_json(out)


def test_query_var(server_factory, client):
    _, port = server_factory(query_app)
    query = ("a=1&b=hello+world&c=%41%42%20&empty=&plus=1%2B1&utf=%C3%A9&bad=%zz"
             "&long=" + "x" * 2048 + "&ok=" + "y" * 2047)
    out = client.get("http://127.0.0.1:%d/q?%s" % (port, query)).json()
    assert out["a"] == "1"
    assert out["A"] == "1"  # names match case-insensitively
    assert out["b"] == "hello world"
    assert out["c"] == "AB "
    assert out["empty"] is None  # an empty value reads as absent
    assert out["missing"] is None
    assert out["plus"] == "1+1"
    assert out["utf"] == "\u00e9"
    assert out["ok"] == "y" * 2047
    assert out["bad"] == ["ValueError",
                          "Query parameter 'bad' value exceeds 2048-byte buffer limit"]
    assert out["long"] == ["ValueError",
                           "Query parameter 'long' value exceeds 2048-byte buffer limit"]


def test_query_var_without_query(server_factory, client):
    _, port = server_factory(query_app)
    out = client.get("http://127.0.0.1:%d/q" % port).json()
    assert out["a"] is None and out["missing"] is None


# -- keep-alive and concurrency -------------------------------------------------

def test_thousand_keepalive_requests_on_one_connection(port):
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    ids = set()
    with httpx.Client(timeout=10, limits=limits) as c:
        for i in range(1000):
            r = c.post("http://127.0.0.1:%d/echo" % port, content=b"%d" % i)
            assert r.status_code == 200 and r.content == b"%d" % i
            ids.add(r.headers["x-conn"])
    assert len(ids) == 1


def test_fifty_concurrent_clients(port):
    n = 50
    barrier = threading.Barrier(n)
    results = [None] * n

    def client_thread(i: int) -> None:
        try:
            with httpx.Client(timeout=20) as c:
                barrier.wait(20)
                got = []
                for j in range(4):
                    body = b"client %d request %d " % (i, j) * (i + 1)
                    r = c.post("http://127.0.0.1:%d/echo" % port, content=body)
                    got.append(r.status_code == 200 and r.content == body)
                results[i] = (all(got), r.headers["x-conn"])
        except Exception as exc:  # reported by the assertion below
            results[i] = (False, repr(exc))

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)
    assert all(ok for ok, _ in results), results
    assert len({conn for _, conn in results}) == n  # one server connection each


# -- IPv6 -----------------------------------------------------------------------

def test_ipv6_loopback(server_factory, client):
    reason = ipv6_loopback()
    if reason:
        pytest.skip(reason)
    seen = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen.append((conn.local_addr, conn.remote_addr))
            conn.reply(200, "v6")

    loop, port = server_factory(handler, url="http://[::1]:0")
    lsn = loop.call(lambda: loop.mgr.connections[0])
    assert loop.call(lambda: lsn.local_addr) == ("0000:0000:0000:0000:0000:0000:0000:0001",
                                                 port, True)
    r = client.get("http://[::1]:%d/" % port)
    assert r.text == "v6"
    local, remote = seen[0]
    assert local == ("0000:0000:0000:0000:0000:0000:0000:0001", port, True)
    assert remote[0] == "0000:0000:0000:0000:0000:0000:0000:0001" and remote[2] is True


def test_ipv6_any_address_is_dual_stack(server_factory, client):
    # MG_ENABLE_IPV6=1: a listener on [::] also accepts IPv4 clients, which
    # appear as IPv4-mapped addresses. Mongoose leaves IPV6_V6ONLY to the
    # system default (net.ipv6.bindv6only, 0 unless changed).
    reason = ipv6_loopback()
    if reason:
        pytest.skip(reason)
    try:
        with open("/proc/sys/net/ipv6/bindv6only") as f:
            if f.read().strip() == "1":
                pytest.skip("net.ipv6.bindv6only=1: [::] listeners are IPv6-only here")
    except OSError:
        pass
    seen = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen.append(conn.remote_addr)
            conn.reply(200, "dual")

    _, port = server_factory(handler, url="http://[::]:0")
    assert client.get("http://[::1]:%d/" % port).text == "dual"
    assert client.get("http://127.0.0.1:%d/" % port).text == "dual"
    assert seen[0][0] == "0000:0000:0000:0000:0000:0000:0000:0001"
    assert seen[1][0] == "0000:0000:0000:0000:0000:ffff:7f00:0001" and seen[1][2] is True


# -- reply() and reply_json() on the wire --------------------------------------

def wire_app(conn: cm.Connection, ev: int, hm: object) -> None:
    if ev != cm.MG_EV_HTTP_MSG:
        return
    uri = hm.uri
    if uri == "/plain":
        conn.reply(200, "hi")
    elif uri == "/headers":
        conn.reply(201, "ab", {"X-A": "1", "X-B": 2})
    elif uri == "/own-type":
        conn.reply(200, "<b>x</b>", {"content-type": "text/html"})
    elif uri == "/nul":
        conn.reply(200, b"ab\x00cd\xff")
    elif uri == "/unknown-status":
        conn.reply(299, "")
    elif uri == "/percent":
        conn.reply(200, "100%s %d %%")
    elif uri == "/json":
        conn.reply_json({"k": [1, "\u00e9"]}, 202, {"X-J": "y"})
    elif uri == "/json-lower":
        conn.reply_json([], headers={"content-type": "text/plain"})
    elif uri == "/bad-header":
        before = conn.send_len
        errors = []
        for bad in ({"X-Bad\r\nInjected": "v"}, {"X-Ok": "v\nInjected: 1"},
                    {"X-Nul\0": "v"}, {"X-Ok": "a\rb"}):
            try:
                conn.reply(200, "never", bad)
            except ValueError as exc:
                errors.append(str(exc))
        conn.reply_json({"errors": errors, "nothing_queued": conn.send_len == before})


@pytest.fixture
def wire_port(server_factory):
    return server_factory(wire_app)[1]


def test_reply_wire_format(wire_port):
    raw = get_close(wire_port, "/plain")
    # The answer to a Connection: close request says it closes (RFC 9112 9.6).
    assert raw.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Connection: close\r\nContent-Length: 2\r\n")
    assert raw.endswith(b"\r\n\r\nhi")


def test_reply_user_headers_follow_default_content_type(wire_port):
    status, headers, body = parse_response(get_close(wire_port, "/headers"))
    assert status == 201
    names = [k for k, _ in headers]
    assert names[:3] == ["Content-Type", "X-A", "X-B"]  # default type prepended
    assert header_map(headers)["x-b"] == "2"  # values go through str()
    assert body == b"ab"


def test_reply_keeps_user_content_type_any_case(wire_port):
    status, headers, body = parse_response(get_close(wire_port, "/own-type"))
    types = [v for k, v in headers if k.lower() == "content-type"]
    assert types == ["text/html"]
    assert body == b"<b>x</b>"


def test_reply_body_is_binary_safe(wire_port):
    # Deliberate difference from 0.2.5, which cut the body at the first NUL.
    status, headers, body = parse_response(get_close(wire_port, "/nul"))
    assert body == b"ab\x00cd\xff"
    assert header_map(headers)["content-length"] == "6"


def test_reply_unknown_status_and_percent(wire_port):
    raw = get_close(wire_port, "/unknown-status")
    assert raw.startswith(b"HTTP/1.1 299 \r\n")
    assert parse_response(get_close(wire_port, "/percent"))[2] == b"100%s %d %%"


def test_reply_json(wire_port):
    status, headers, body = parse_response(get_close(wire_port, "/json"))
    assert status == 202
    h = header_map(headers)
    assert h["content-type"] == "application/json" and h["x-j"] == "y"
    assert body == json.dumps({"k": [1, "\u00e9"]}).encode()


def test_reply_json_keeps_other_case_content_type(wire_port):
    # 0.2.5 behaviour kept: only the exact key "Content-Type" is replaced.
    status, headers, body = parse_response(get_close(wire_port, "/json-lower"))
    types = sorted(v for k, v in headers if k.lower() == "content-type")
    assert types == ["application/json", "text/plain"]
    assert body == b"[]"


def test_reply_rejects_header_injection(wire_port):
    out = json.loads(parse_response(get_close(wire_port, "/bad-header"))[2])
    assert out["nothing_queued"] is True  # a refused reply() writes nothing
    assert out["errors"] == [
        "Header name contains illegal character (CR, LF, or NUL): 'X-Bad\\r\\nInjected'",
        "Header value contains illegal character (CR, LF, or NUL): 'v\\nInjected: 1'",
        "Header name contains illegal character (CR, LF, or NUL): 'X-Nul\\x00'",
        "Header value contains illegal character (CR, LF, or NUL): 'a\\rb'",
    ]


# -- HttpMessage fields ---------------------------------------------------------

def test_http_message_fields_raw(server_factory):
    seen = {}

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen.update(
                method=hm.method, uri=hm.uri, query=hm.query, proto=hm.proto,
                headers=hm.headers(), first=hm.header("X-DUP"),
                default=hm.header("nope"), charset=hm.header_var("Content-Type", "charset"),
                boundary=hm.header_var("Content-Type", "boundary"),
                no_header=hm.header_var("X-None", "a"), status=hm.status(),
                text=hm.body_text, raw=hm.body_bytes, truth=bool(hm))
            conn.reply(200, "ok")

    _, port = server_factory(handler)
    body = b"caf\xc3\xa9 \xff"
    req = (b"PATCH /p%2Fq?x=%20 HTTP/1.1\r\nHost: t\r\nX-Dup: one\r\nx-dup: two\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert parse_response(raw_request(port, req))[0] == 200
    assert seen["method"] == "PATCH"
    assert seen["uri"] == "/p%2Fq"
    assert seen["query"] == "x=%20"
    assert seen["proto"] == "HTTP/1.1"
    assert seen["headers"][:3] == [("Host", "t"), ("X-Dup", "one"), ("x-dup", "two")]
    assert seen["first"] == "one"
    assert seen["default"] is None
    assert seen["charset"] == "utf-8"
    assert seen["boundary"] is None and seen["no_header"] is None
    assert seen["status"] == 0
    assert seen["raw"] == body
    assert seen["text"] == "caf\u00e9 \udcff"  # surrogateescape keeps the bad byte
    assert seen["text"].encode("utf-8", "surrogateescape") == body
    assert seen["truth"] is True


def test_http_hdrs_precedes_http_msg(server_factory, client):
    seen = []

    def handler(conn, ev, hm):
        if ev in (cm.MG_EV_HTTP_HDRS, cm.MG_EV_HTTP_MSG):
            seen.append((ev, hm.method, hm.header("X-Test")))
            if ev == cm.MG_EV_HTTP_MSG:
                conn.reply(200, hm.body_bytes)

    _, port = server_factory(handler)
    r = client.post("http://127.0.0.1:%d/h" % port, content=b"b" * 5000,
                    headers={"X-Test": "t"})
    assert r.content == b"b" * 5000
    # HDRS fires again each time more of an incomplete body arrives.
    assert seen[-1] == (cm.MG_EV_HTTP_MSG, "POST", "t")
    assert seen[:-1] and set(seen[:-1]) == {(cm.MG_EV_HTTP_HDRS, "POST", "t")}



def test_a_request_answered_and_drained_at_its_head_gets_no_second_answer(server_factory):
    # Refusing a body before it is read: head and body arrive in one write, so
    # Mongoose has the whole request when the handler drains at HTTP_HDRS.
    seen = []

    def handler(conn, ev, hm):
        if ev in (cm.MG_EV_HTTP_HDRS, cm.MG_EV_HTTP_MSG):
            seen.append(ev)
            conn.reply(401, b"log in first")
            conn.drain()

    _, port = server_factory(handler)
    raw = raw_request(port, b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
                      + b"x" * 1000)
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.endswith(b"log in first"), raw
    assert seen == [cm.MG_EV_HTTP_HDRS]


def test_no_pipelined_request_reaches_a_handler_that_drained_its_connection(server_factory):
    seen = []

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen.append(hm.uri)
            conn.reply(200, hm.uri)
            conn.drain()

    _, port = server_factory(handler)
    raw = raw_request(port, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                            b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.endswith(b"/a"), raw
    assert seen == ["/a"]


# -- HTTP inferred from the scheme ---------------------------------------------

@pytest.mark.parametrize("url, http, parsed", [
    ("http://127.0.0.1:0", None, True),
    ("tcp://127.0.0.1:0", None, False),
    ("tcp://127.0.0.1:0", True, True),
    ("http://127.0.0.1:0", False, False),
])
def test_http_parsing_follows_scheme(url, http, parsed):
    events = []

    def handler(conn, ev, data):
        if ev in (cm.MG_EV_HTTP_MSG, cm.MG_EV_READ) and not conn.is_listening:
            events.append(ev)
            if ev == cm.MG_EV_HTTP_MSG:
                conn.userdata = "answered"
                conn.reply(200, "parsed")
            elif conn.userdata is None:  # READ follows HTTP_MSG for the same bytes
                conn.userdata = "answered"
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
                conn.drain()

    mgr = cm.Manager(handler)
    try:
        lsn = mgr.listen(url) if http is None else mgr.listen(url, http=http)
        port = lsn.local_addr[1]
        loop = LoopThread(mgr).start()
        try:
            body = parse_response(get_close(port, "/"))[2]
            wait_until(lambda: events)
        finally:
            loop.stop()
    finally:
        mgr.close()
    assert body == (b"parsed" if parsed else b"raw")
    assert (cm.MG_EV_HTTP_MSG in events) == parsed
