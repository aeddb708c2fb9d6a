"""Proxy headers and the mount prefix: WSGI and ASGI servers behind a (pretend) proxy.

The "proxy" is the test's httpx client sending the headers a proxy would
add; whether they are believed depends on the peer address the server sees
(127.0.0.1 or ::1) and ``forwarded_allow_ips``.
"""

import asyncio
import ipaddress
import json
import logging
import re
import threading

import httpx
import pytest

from cymongoose.asgi import ASGIServer
from cymongoose.forwarded import Front, parse_forwarded
from cymongoose.wsgi import WSGIServer
from support.loop import wait_until
from support.servers import AsgiThread, WsgiThread, raw_exchange


def wsgi_app(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SCRIPT_NAME",
            "PATH_INFO")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    host = dict(scope["headers"]).get(b"host", b"").decode()
    body = json.dumps({"client": scope["client"], "scheme": scope["scheme"],
                       "server": scope["server"], "root_path": scope["root_path"],
                       "path": scope["path"], "host": host}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def as_common(kind, seen):
    """The WSGI environ / ASGI scope answers in one shape."""
    if kind == "wsgi":
        return {"ip": seen["REMOTE_ADDR"], "port": int(seen["REMOTE_PORT"]),
                "scheme": seen["wsgi.url_scheme"], "host": seen["HTTP_HOST"],
                "root": seen["SCRIPT_NAME"], "path": seen["PATH_INFO"]}
    return {"ip": seen["client"][0], "port": seen["client"][1], "scheme": seen["scheme"],
            "host": seen["host"], "root": seen["root_path"], "path": seen["path"],
            "server": seen["server"]}


@pytest.fixture(params=["wsgi", "asgi"])
def serve(request):
    """``serve(**options)`` -> base URL of a WSGI or ASGI server on 127.0.0.1."""
    kind = request.param
    started = []

    def start(**options):
        srv = WsgiThread(wsgi_app, **options) if kind == "wsgi" else \
            AsgiThread(asgi_app, **options)
        started.append(srv)
        return srv.url

    start.kind = kind
    yield start
    for srv in started:
        srv.stop()


def get(url, path="/", **headers):
    r = httpx.get(url + path, headers=headers, timeout=10)
    assert r.status_code == 200
    return r.json()


PROXIED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
           "X-Forwarded-Host": "example.com"}


def test_trusted_proxy_sets_client_scheme_and_host(serve):
    url = serve()  # default: 127.0.0.1 is trusted
    seen = as_common(serve.kind, get(url, "/a", **PROXIED))
    assert (seen["ip"], seen["port"], seen["scheme"], seen["host"]) == \
        ("203.0.113.7", 0, "https", "example.com")
    if serve.kind == "asgi":
        assert seen["server"] == ["example.com", 443]


def test_untrusted_peer_changes_nothing(serve):
    url = serve(forwarded_allow_ips="10.0.0.0/8")
    port = int(url.rsplit(":", 1)[1])
    for headers in (PROXIED, {"Forwarded": "for=203.0.113.7;proto=https;host=example.com"}):
        seen = as_common(serve.kind, get(url, "/a", **headers))
        assert seen["ip"] == "127.0.0.1" and seen["port"] != 0
        assert seen["scheme"] == "http"
        assert seen["host"] == "127.0.0.1:%d" % port


def test_rfc7239_forwarded_wins_over_x_forwarded(serve):
    url = serve()
    seen = as_common(serve.kind, get(url, **dict(
        PROXIED, Forwarded='for="[2001:db8:cafe::17]:4711";proto=https;host=shop.example')))
    assert (seen["ip"], seen["port"], seen["scheme"], seen["host"]) == \
        ("2001:db8:cafe::17", 4711, "https", "shop.example")


def test_several_hops_stop_at_the_first_untrusted(serve):
    url = serve(forwarded_allow_ips="127.0.0.1, 10.0.0.0/8")
    # client -> 198.51.100.1 (untrusted proxy) -> 10.1.1.1 (ours) -> 127.0.0.1 (ours)
    seen = as_common(serve.kind, get(url, **{
        "X-Forwarded-For": "192.0.2.99, 198.51.100.1, 10.1.1.1",
        "X-Forwarded-Proto": "https, http, http"}))
    assert seen["ip"] == "198.51.100.1"  # a client cannot forge the hops before it
    assert seen["scheme"] == "http"  # the value at the client's position
    seen = as_common(serve.kind, get(url, **{"X-Forwarded-For": "192.0.2.99, 10.1.1.1",
                                             "X-Forwarded-Proto": "https"}))
    assert (seen["ip"], seen["scheme"]) == ("192.0.2.99", "https")
    seen = as_common(serve.kind, get(url, **{"Forwarded": "for=192.0.2.5, for=10.2.2.2"}))
    assert seen["ip"] == "192.0.2.5"


def test_root_path(serve):
    url = serve(root_path="/api")
    seen = as_common(serve.kind, get(url, "/items/1"))
    if serve.kind == "wsgi":
        assert (seen["root"], seen["path"]) == ("/api", "/items/1")
        # A proxy that keeps the prefix: PATH_INFO loses it.
        seen = as_common(serve.kind, get(url, "/api/items/1"))
        assert (seen["root"], seen["path"]) == ("/api", "/items/1")
    else:
        # ASGI: path includes root_path, as uvicorn and Starlette expect.
        assert (seen["root"], seen["path"]) == ("/api", "/api/items/1")
        seen = as_common(serve.kind, get(url, "/api/items/1"))
        assert (seen["root"], seen["path"]) == ("/api", "/api/items/1")


def test_bad_headers_are_ignored(serve):
    url = serve()
    seen = as_common(serve.kind, get(url, **{"X-Forwarded-For": "<script>",
                                             "X-Forwarded-Proto": "gopher",
                                             "X-Forwarded-Host": "a b"}))
    assert seen["ip"] == "127.0.0.1" and seen["scheme"] == "http"
    assert seen["host"].startswith("127.0.0.1:")
    seen = as_common(serve.kind, get(url, Forwarded='for="unterminated'))
    assert seen["ip"] == "127.0.0.1"


def _serve_v6(kind, allow):
    """A server on [::1]; returns (url, stop)."""
    if kind == "wsgi":
        server = WSGIServer(wsgi_app, forwarded_allow_ips=allow)
        port = server.listen("http://[::1]:0").local_addr[1]
        thread = threading.Thread(target=server.run, kwargs={"poll_ms": 50}, daemon=True)
        thread.start()

        def stop():
            server.stop()
            thread.join(30)
        return "http://[::1]:%d" % port, stop
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asrv = ASGIServer(asgi_app, forwarded_allow_ips=allow)
    conn = asyncio.run_coroutine_threadsafe(asrv.start("http://[::1]:0"), loop).result(30)

    def astop():
        asyncio.run_coroutine_threadsafe(asrv.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    return "http://[::1]:%d" % conn.local_addr[1], astop


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_ipv6_peers(kind):
    url, stop = _serve_v6(kind, "::1")
    try:
        seen = as_common(kind, get(url, **{"X-Forwarded-For": "2001:db8::5, ::1"}))
        assert seen["ip"] == "2001:db8::5"
        seen = as_common(kind, get(url, Forwarded='for="[2001:db8::6]:99"'))
        assert (seen["ip"], seen["port"]) == ("2001:db8::6", 99)
    finally:
        stop()
    url, stop = _serve_v6(kind, "127.0.0.1")  # ::1 is not trusted
    try:
        seen = as_common(kind, get(url, **{"X-Forwarded-For": "2001:db8::5"}))
        assert ipaddress.ip_address(seen["ip"]) == ipaddress.ip_address("::1")
    finally:
        stop()


def test_parse_forwarded():
    assert parse_forwarded('for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https') == \
        [{"for": "192.0.2.43"}, {"for": "[2001:db8:cafe::17]", "proto": "https"}]
    assert parse_forwarded('For="\\"quoted\\""') == [{"for": '"quoted"'}]
    for bad in ('for', 'for=a b', 'for="x'):
        with pytest.raises(ValueError):
            parse_forwarded(bad)


def test_front_arguments():
    with pytest.raises(ValueError, match="not an IP"):
        Front("localhost")
    with pytest.raises(ValueError, match="root_path"):
        Front("*", "api")
    assert Front("*").trusts("198.51.100.1")
    assert not Front("").active and not Front(None).trusts("127.0.0.1")
    assert Front("127.0.0.1").trusts("::ffff:127.0.0.1")


def test_access_log_uses_the_forwarded_client(serve, caplog):
    caplog.set_level(logging.INFO, logger="cymongoose.access")
    url = serve()
    r = httpx.get(url + "/x?q=1", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=10)
    body = len(r.content)
    line = re.compile(r'^203\.0\.113\.7 - - "GET /x\?q=1 HTTP/1\.1" 200 %d \d+\.\d{6}$' % body)

    def logged():
        return [rec.getMessage() for rec in caplog.records if rec.name == "cymongoose.access"]
    wait_until(lambda: logged(), 10)
    assert line.match(logged()[0]), logged()
    raw_exchange(int(url.rsplit(":", 1)[1]),
                 b'GET /"quoted" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
                 lambda data: False)
    wait_until(lambda: len(logged()) == 2, 10)
    assert logged()[1].startswith('127.0.0.1 - - "GET /\\x22quoted\\x22 HTTP/1.1" 200 ')
