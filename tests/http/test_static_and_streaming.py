"""Static files (serve_dir, serve_file), chunked and SSE streaming, the HTTP client, basic auth."""

import base64
import os
import socket

import httpx
import pytest

import cymongoose as cm
from support.http_raw import get_close, parse_response
from support.loop import poll_until
from support.sockets import free_port, read_until

SECRET = b"TOP SECRET, outside the root"
BIG_SIZE = (1 << 20) + 123


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """A document root, plus a secret file next to it (outside the root)."""
    base = tmp_path_factory.mktemp("static")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "style.css").write_bytes(b"body{}")
    (root / "app.js").write_bytes(b"let a = 1;")
    (root / "data.json").write_bytes(b'{"a": 1}')
    (root / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (root / "notes.txt").write_bytes(b"0123456789" * 10)
    (root / "thing.foo").write_bytes(b"foo!")
    (root / "404.html").write_bytes(b"custom not found")
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    sub = root / "sub"
    sub.mkdir()
    (sub / "a.txt").write_bytes(b"A")
    (sub / "b.txt").write_bytes(b"B")
    return root


@pytest.fixture
def static_port(server_factory, www):
    root = str(www)

    def handler(conn, ev, hm):
        if ev != cm.MG_EV_HTTP_MSG:
            return
        if hm.uri.startswith("/only-notes/"):
            conn.serve_file(hm, os.path.join(root, "notes.txt"), "X-File: yes\r\n")
        elif hm.query == "custom":
            conn.serve_dir(hm, root, extra_headers="X-Static: yes\r\n",
                           mime_types="foo=application/x-foo",
                           page404=os.path.join(root, "404.html"))
        else:
            conn.serve_dir(hm, root)

    return server_factory(handler)[1]


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


# -- serve_dir ------------------------------------------------------------------

def test_index(static_port, client):
    r = client.get("http://127.0.0.1:%d/" % static_port)
    assert r.status_code == 200
    assert r.content == b"<h1>home</h1>"
    assert r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("name, mime", [
    ("index.html", "text/html"), ("style.css", "text/css"), ("app.js", "text/javascript"),
    ("data.json", "application/json"), ("pic.png", "image/png"),
    ("notes.txt", "text/plain"),
])
def test_mime_types(static_port, client, www, name, mime):
    r = client.get("http://127.0.0.1:%d/%s" % (static_port, name))
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == mime
    assert r.content == (www / name).read_bytes()


def test_custom_mime_and_extra_headers(static_port, client):
    r = client.get("http://127.0.0.1:%d/thing.foo?custom" % static_port)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-foo"
    assert r.headers["x-static"] == "yes"
    assert r.content == b"foo!"


def test_404(static_port, client):
    r = client.get("http://127.0.0.1:%d/missing.txt" % static_port)
    assert r.status_code == 404


def test_custom_404_page(static_port, client):
    r = client.get("http://127.0.0.1:%d/missing.txt?custom" % static_port)
    # Mongoose 7.23 serves the page404 file like any file, with status 200.
    assert r.status_code == 200
    assert r.content == b"custom not found"
    assert r.headers["content-type"].startswith("text/html")


def test_range_requests(static_port, client, www):
    data = (www / "big.bin").read_bytes()
    url = "http://127.0.0.1:%d/big.bin" % static_port
    r = client.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 10-19/%d" % BIG_SIZE
    assert r.content == data[10:20]
    r = client.get(url, headers={"Range": "bytes=%d-" % (BIG_SIZE - 5)})
    assert r.status_code == 206 and r.content == data[-5:]


def test_large_file_streams_over_polls(static_port, client, www):
    with client.stream("GET", "http://127.0.0.1:%d/big.bin" % static_port) as r:
        assert int(r.headers["content-length"]) == BIG_SIZE
        body = b"".join(r.iter_bytes())
    assert body == (www / "big.bin").read_bytes()


def test_head_on_file(static_port, client):
    r = client.head("http://127.0.0.1:%d/notes.txt" % static_port)
    assert r.status_code == 200
    assert r.headers["content-length"] == "100"
    assert r.content == b""
    assert client.get("http://127.0.0.1:%d/sub/a.txt" % static_port).content == b"A"


def test_etag_not_modified(static_port, client):
    url = "http://127.0.0.1:%d/notes.txt" % static_port
    etag = client.get(url).headers["etag"]
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""


def test_directory_listing_and_redirect(static_port, client):
    r = client.get("http://127.0.0.1:%d/sub/" % static_port)
    assert r.status_code == 200
    assert b"a.txt" in r.content and b"b.txt" in r.content
    r = client.get("http://127.0.0.1:%d/sub" % static_port)
    assert r.status_code == 301
    assert r.headers["location"] == "/sub/"


@pytest.mark.parametrize("target, status", [
    ("/../secret.txt", 400),
    ("/%2e%2e/secret.txt", 400),
    ("/%2E%2E%2Fsecret.txt", 400),
    ("/..%2fsecret.txt", 400),
    ("/sub/../../secret.txt", 400),
    ("/sub/%2e%2e/%2e%2e/secret.txt", 400),
    ("/..\\secret.txt", 400),
    ("/~/secret.txt", 404),
    # Mongoose drops the URI's first character (the "/" it expects), so these
    # resolve inside the root and are simply missing there.
    ("../secret.txt", 404),
    (".%2e/secret.txt", 404),
])
def test_traversal_refused(static_port, target, status):
    raw = get_close(static_port, target)
    assert parse_response(raw)[0] == status, raw[:200]
    assert SECRET not in raw


def test_traversal_still_serves_afterwards(static_port, client):
    get_close(static_port, "/../secret.txt")
    assert client.get("http://127.0.0.1:%d/" % static_port).status_code == 200


# -- serve_file -----------------------------------------------------------------

def test_serve_file_ignores_uri(static_port, client):
    r = client.get("http://127.0.0.1:%d/only-notes/whatever.png" % static_port)
    assert r.status_code == 200
    assert r.content == b"0123456789" * 10
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-file"] == "yes"
    r = client.get("http://127.0.0.1:%d/only-notes/x" % static_port,
                   headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"0123"


def test_serve_file_missing_is_404(server_factory, client, www):
    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.serve_file(hm, str(www / "nope.txt"))

    _, port = server_factory(handler)
    assert client.get("http://127.0.0.1:%d/" % port).status_code == 404


# -- chunked and SSE, read incrementally ---------------------------------------

@pytest.fixture
def streamer(server_factory):
    """A server that starts a chunked response and hands the connection to the test."""
    held = []

    def handler(conn, ev, hm):
        if ev != cm.MG_EV_HTTP_MSG:
            return
        if hm.uri == "/sse":
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.http_sse("greeting", "hello")
        elif hm.uri == "/reply-chunked":
            # The documented pattern: reply() with the header, then chunks.
            conn.reply(200, "", {"Transfer-Encoding": "chunked"})
            conn.http_chunk("first")
        elif hm.uri == "/chunked":
            conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.http_chunk(b"first")
        else:
            conn.reply(200, "plain")
            return
        held.append(conn)

    loop, port = server_factory(handler)
    return loop, port, held


def read_exactly(stream, n):
    """Read ``n`` bytes from an httpx byte iterator, chunk boundaries ignored."""
    buf = b""
    while len(buf) < n:
        buf += next(stream)
    assert len(buf) == n, buf
    return buf


@pytest.mark.parametrize("path", ["/chunked", "/reply-chunked"])
def test_chunked_response_read_incrementally(streamer, client, path):
    loop, port, held = streamer
    with client.stream("GET", "http://127.0.0.1:%d%s" % (port, path)) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        chunks = r.iter_bytes()
        assert read_exactly(chunks, 5) == b"first"
        # The next chunk is written only now that the first one has arrived.
        conn = held[0]
        loop.call(lambda: conn.http_chunk("second"))
        assert read_exactly(chunks, 6) == b"second"
        loop.call(lambda: conn.http_chunk(b"\x00binary\xff"))
        assert read_exactly(chunks, 8) == b"\x00binary\xff"
        loop.call(lambda: conn.http_chunk(b""))  # terminator
        assert list(chunks) == []
    # The keep-alive connection is usable again after the terminating chunk.
    assert client.get("http://127.0.0.1:%d/after" % port).text == "plain"


def test_sse_read_incrementally(streamer, client):
    loop, port, held = streamer
    with client.stream("GET", "http://127.0.0.1:%d/sse" % port) as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = r.iter_lines()
        assert [next(lines), next(lines), next(lines)] == ["event: greeting", "data: hello", ""]
        conn = held[0]
        loop.call(lambda: conn.http_sse("tick", "1\n2"))
        # One chunk; a newline in data is not split into several data: lines.
        assert [next(lines), next(lines), next(lines), next(lines)] == \
            ["event: tick", "data: 1", "2", ""]
        loop.call(lambda: conn.http_chunk(""))
        assert list(lines) == []


def test_chunk_wire_format(streamer):
    loop, port, held = streamer
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
        head = read_until(sock, lambda got: got.endswith(b"5\r\nfirst\r\n"))
        assert head == (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nfirst\r\n")
        conn = held[0]
        loop.call(lambda: conn.http_sse("e", "d"))
        assert read_until(sock, lambda got: got.endswith(b"\n\n\r\n")) == b"12\r\nevent: e\ndata: d\n\n\r\n"
        loop.call(lambda: conn.http_chunk(""))
        assert read_until(sock, lambda got: got.endswith(b"0\r\n\r\n")) == b"0\r\n\r\n"


# -- the HTTP client ------------------------------------------------------------

def client_server_pair(server_handler, client_handler, path="/"):
    """One Manager polled on this thread: a server and an HTTP client of it."""
    mgr = cm.Manager()
    lsn = mgr.listen("http://127.0.0.1:0", server_handler)
    port = lsn.local_addr[1]
    conn = mgr.connect("http://127.0.0.1:%d" % port, client_handler)
    return mgr, conn, port


def test_http_client_get(www):
    got = {}
    events = []

    def server(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "hello " + hm.uri + " " + hm.query_var("x"),
                       {"X-Server": "cym"})

    def client(conn, ev, data):
        events.append(ev)
        if ev == cm.MG_EV_CONNECT:
            conn.send("GET /path?x=42 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            got.update(status=data.status(), method=data.method, uri=data.uri,
                       proto=data.proto, body=data.body_text,
                       server=data.header("x-server"), truth=bool(data))
            conn.close()

    mgr, conn, _ = client_server_pair(server, client)
    try:
        assert conn.is_client and not conn.is_listening
        poll_until(mgr, lambda: cm.MG_EV_CLOSE in events)
    finally:
        mgr.close()
    assert got == {"status": 200, "method": "HTTP/1.1", "uri": "200", "proto": "OK",
                   "body": "hello /path 42", "server": "cym", "truth": True}
    assert events.index(cm.MG_EV_CONNECT) < events.index(cm.MG_EV_HTTP_MSG)
    assert conn.id == 0 and conn.is_closing


def test_http_client_404_and_chunked_body_reassembled():
    got = []

    def server(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            if hm.uri == "/missing":
                conn.reply(404, "nothing here")
            else:
                conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for part in ("ab", "cd" * 5000, "e"):
                    conn.http_chunk(part)
                conn.http_chunk("")

    def client(conn, ev, data):
        if ev == cm.MG_EV_CONNECT:
            conn.send("GET /missing HTTP/1.1\r\nHost: h\r\n\r\n"
                      "GET /chunks HTTP/1.1\r\nHost: h\r\n\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            got.append((data.status(), data.uri, data.proto, data.body_bytes))

    mgr, conn, _ = client_server_pair(server, client)
    try:
        poll_until(mgr, lambda: len(got) == 2)
    finally:
        mgr.close()
    assert got[0] == (404, "404", "Not Found", b"nothing here")
    assert got[1] == (200, "200", "OK", b"ab" + b"cd" * 5000 + b"e")


def test_http_client_refused_gives_error_then_close():
    port = free_port()  # nobody listens there
    events = []

    def client(conn, ev, data):
        if ev in (cm.MG_EV_ERROR, cm.MG_EV_CONNECT, cm.MG_EV_CLOSE):
            events.append((ev, data))

    with cm.Manager() as mgr:
        mgr.connect("http://127.0.0.1:%d" % port, client)
        poll_until(mgr, lambda: events and events[-1][0] == cm.MG_EV_CLOSE)
        assert mgr.connections == ()
    assert [ev for ev, _ in events] == [cm.MG_EV_ERROR, cm.MG_EV_CLOSE]
    assert isinstance(events[0][1], str) and events[0][1]


@pytest.mark.parametrize("user, password", [("user", "pass"), ("user", ""),
                                            ("\u00e9l\u00e8ve", "p:w")])
def test_http_basic_auth_on_client(user, password):
    seen = {}

    def server(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen["auth"] = hm.header("Authorization")
            conn.reply(200, "ok")

    def client(conn, ev, data):
        if ev == cm.MG_EV_CONNECT:
            conn.send("GET / HTTP/1.1\r\nHost: h\r\n")
            before = conn.send_data()
            conn.http_basic_auth(user, password)
            seen["appended"] = conn.send_data()[len(before):]
            conn.send("\r\n")
        elif ev == cm.MG_EV_HTTP_MSG:
            seen["status"] = data.status()

    mgr, conn, _ = client_server_pair(server, client)
    try:
        poll_until(mgr, lambda: "status" in seen)
    finally:
        mgr.close()
    cred = user if not password else user + ":" + password
    token = base64.b64encode(cred.encode("utf-8")).decode()
    assert seen["appended"] == ("Authorization: Basic %s\r\n" % token).encode()
    assert seen["auth"] == "Basic " + token
    assert seen["status"] == 200
    if password:  # what httpx sends too (it keeps the ":" of an empty password)
        flow = httpx.BasicAuth(user, password).auth_flow(httpx.Request("GET", "http://h/"))
        assert next(flow).headers["Authorization"] == seen["auth"]
