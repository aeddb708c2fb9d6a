"""The command line, end to end: ``python -m cymongoose`` run as a subprocess
and driven with real clients (httpx, websocket-client, paho-mqtt, ssl)."""

import re
import socket
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Iterator, List

import httpx
import pytest
import websocket

from support.cli import Server, run_cli
from support.loop import wait_until
from support.mqtt import MOSQUITTO_PASSWD, Paho, unique
from support.sockets import read_until

A_TXT = b"0123456789abcdef"
FILES = {
    "a.txt": A_TXT,
    "page.html": b"<h1>hi</h1>",
    "data.json": b'{"a": 1}',
    "style.css": b"p {}",
    "script.js": b"1;",
    "pic.png": b"\x89PNG\r\n\x1a\n",
    "app.wasm": b"\x00asm\x01\x00\x00\x00",
    "sub/inner.txt": b"inner",
}


def marker() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def webroot(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("webroot")
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    return str(root)


@pytest.fixture(scope="module")
def static(webroot: str) -> Iterator[Server]:
    """``serve DIR --ws-echo /ws`` on a free port; stopped with Ctrl-C afterwards."""
    server = Server("serve", webroot, "--listen", "http://127.0.0.1:0", "--ws-echo", "/ws")
    yield server
    server.stop_cleanly()


@pytest.fixture(scope="module")
def http(static: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=static.url, timeout=10) as client:
        yield client


def raw_head(server: Server, request: bytes) -> bytes:
    """Send ``request`` as is (httpx would normalise it); the response head."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(request)
        return read_until(s, lambda reply: b"\r\n\r\n" in reply)


def access_lines(server: Server, mark: str) -> List[str]:
    return [line for line in server.output.splitlines() if mark in line]


# -- --help and usage errors -------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["serve"], ["mqtt-broker"], ["wsgi"], ["asgi"]],
                         ids=["top", "serve", "mqtt-broker", "wsgi", "asgi"])
def test_help_exits_0(args: List[str]) -> None:
    res = run_cli(*args, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: cymongoose")
    for word in (["serve", "mqtt-broker", "wsgi", "asgi"] if not args else ["--listen"]):
        assert word in res.stdout
    if args and args[0] != "mqtt-broker":
        assert "default http://127.0.0.1:8000" in " ".join(res.stdout.split())


BAD_ARGS = {
    "no-command": [],
    "unknown-command": ["bogus"],
    "wsgi-missing-app": ["wsgi"],
    "asgi-missing-app": ["asgi"],
    "wsgi-no-colon": ["wsgi", "module_only"],
    "asgi-empty-attr": ["asgi", "mod:"],
    "wsgi-bad-module-name": ["wsgi", "1mod:app"],
    "wsgi-unimportable": ["wsgi", "no_such_module_cym:app"],
    "asgi-missing-attr": ["asgi", "cli_app_ok:nothing_here"],
    "wsgi-not-callable": ["wsgi", "cli_app_ok:VALUE"],
    "wsgi-zero-workers": ["wsgi", "--workers", "0", "cli_app_ok:app"],
    "wsgi-zero-threads": ["wsgi", "--threads", "0", "cli_app_ok:app"],
    "asgi-bad-allow-ips": ["asgi", "--forwarded-allow-ips", "localhost", "cli_app_ok:app"],
    "wsgi-bad-root-path": ["wsgi", "--root-path", "api", "cli_app_ok:app"],
    "wsgi-https": ["wsgi", "--listen", "https://127.0.0.1:0", "cli_app_ok:app"],
    "serve-bad-url": ["serve", "--listen", "not a url"],
    "serve-bad-port": ["serve", "--listen", "http://127.0.0.1:99999"],
    "serve-unbindable": ["serve", "--listen", "http://203.0.113.1:0"],
    "serve-cert-without-key": ["serve", "--listen", "https://127.0.0.1:0", "--cert", "x.pem"],
    "serve-https-without-cert": ["serve", "--listen", "https://127.0.0.1:0"],
    "serve-missing-cert-file": ["serve", "--listen", "https://127.0.0.1:0",
                                "--cert", "none.pem", "--key", "none.key"],
    "serve-nonexistent-dir": ["serve", "no/such/dir"],
    "broker-http-url": ["mqtt-broker", "--listen", "http://127.0.0.1:0"],
}


@pytest.mark.parametrize("args", list(BAD_ARGS.values()), ids=list(BAD_ARGS))
def test_bad_arguments_give_usage_error_and_exit_2(args: List[str], tmp_path: Path) -> None:
    (tmp_path / "cli_app_ok.py").write_text("VALUE = 1\n\ndef app(e, s):\n    return []\n")
    res = run_cli(*args, cwd=str(tmp_path))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("usage: cymongoose"), res.stderr
    assert "error:" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) <= 10, res.stderr  # short: the usage and one error


# -- serve -------------------------------------------------------------------------


def test_serve_prints_the_real_port(static: Server) -> None:
    assert static.url == "http://127.0.0.1:%d" % static.port
    assert static.port != 0


def test_serve_directory_listing(http: httpx.Client) -> None:
    res = http.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    for name in ("a.txt", "page.html", "sub/"):
        assert name in res.text
    sub = http.get("/sub/")
    assert sub.status_code == 200 and "inner.txt" in sub.text


@pytest.mark.parametrize("name,mime", [
    ("a.txt", "text/plain"), ("page.html", "text/html"), ("data.json", "application/json"),
    ("style.css", "text/css"), ("script.js", "text/javascript"), ("pic.png", "image/png"),
    ("app.wasm", "application/wasm"), ("sub/inner.txt", "text/plain"),
])
def test_serve_files_with_mime_types(http: httpx.Client, name: str, mime: str) -> None:
    res = http.get("/" + name)
    assert res.status_code == 200
    assert res.content == FILES[name]
    assert res.headers["content-type"].split(";")[0] == mime


def test_serve_range_requests(http: httpx.Client) -> None:
    res = http.get("/a.txt", headers={"Range": "bytes=2-5"})
    assert res.status_code == 206
    assert res.content == b"2345"
    assert res.headers["content-range"] == "bytes 2-5/16"
    tail = http.get("/a.txt", headers={"Range": "bytes=10-"})
    assert tail.status_code == 206
    assert tail.content == b"abcdef"
    assert tail.headers["content-range"] == "bytes 10-15/16"


@pytest.mark.parametrize("rng,status,content_range,body", [
    ("bytes=20-30", 416, "bytes */16", b""),
    ("bytes=16-", 416, "bytes */16", b""),
    ("bytes=-0", 416, "bytes */16", b""),
    ("bytes=-4", 206, "bytes 12-15/16", b"cdef"),        # suffix: the last 4 bytes
    ("bytes=-100", 206, "bytes 0-15/16", A_TXT),
    ("bytes=14-100", 206, "bytes 14-15/16", b"ef"),      # clamped to the end
    ("bytes=0-1,4-5", 200, None, A_TXT),                 # several ranges: ignored
    ("bytes=5-2", 200, None, A_TXT),                     # invalid: ignored
    ("bytes=abc", 200, None, A_TXT),
    ("items=0-1", 200, None, A_TXT),                     # unknown unit: ignored
])
def test_serve_range_edge_cases(http: httpx.Client, rng: str, status: int,
                                content_range: str, body: bytes) -> None:
    res = http.get("/a.txt", headers={"Range": rng})
    assert res.status_code == status
    assert res.headers.get("content-range") == content_range
    assert res.content == body


def test_serve_404_head_and_405(http: httpx.Client) -> None:
    assert http.get("/missing.txt").status_code == 404
    head = http.head("/a.txt")
    assert head.status_code == 200 and head.headers["content-length"] == "16"
    post = http.post("/a.txt", content=b"x")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


def test_serve_one_access_log_line_per_request(static: Server, http: httpx.Client) -> None:
    marks = [marker() for _ in range(5)]
    http.get("/a.txt?m=" + marks[0])
    http.get("/a.txt?m=" + marks[1], headers={"Range": "bytes=0-3"})
    http.get("/nothing?m=" + marks[2])
    http.head("/a.txt?m=" + marks[3])
    http.get("/?m=" + marks[4])
    static.wait_for(marks[4])
    expected = [
        r'127\.0\.0\.1 - - "GET /a\.txt\?m=%s HTTP/1\.1" 200 16$' % marks[0],
        r'127\.0\.0\.1 - - "GET /a\.txt\?m=%s HTTP/1\.1" 206 4$' % marks[1],
        r'127\.0\.0\.1 - - "GET /nothing\?m=%s HTTP/1\.1" 404 \d+$' % marks[2],
        r'127\.0\.0\.1 - - "HEAD /a\.txt\?m=%s HTTP/1\.1" 200 0$' % marks[3],
        r'127\.0\.0\.1 - - "GET /\?m=%s HTTP/1\.1" 200 \d+$' % marks[4],
    ]
    # The lines are written in order, so once the last is there the others
    # (and any duplicate of them) are too.
    for mark, rx in zip(marks, expected):
        lines = access_lines(static, mark)
        assert len(lines) == 1, lines
        assert "INFO cymongoose.access:" in lines[0]
        assert re.search(rx, lines[0]), lines[0]


def test_serve_access_log_escapes_quotes(static: Server) -> None:
    mark = marker()
    reply = raw_head(static, b'GET /a"b%s HTTP/1.1\r\nHost: x\r\n\r\n' % mark.encode())
    assert reply.startswith(b"HTTP/1.1 404")
    line = static.wait_for(r".*%s.*" % mark).group()
    assert '"GET /a\\x22b%s HTTP/1.1" 404' % mark in line


def test_serve_refuses_paths_outside_the_root(static: Server) -> None:
    reply = raw_head(static, b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")), reply
    reply = raw_head(static, b"GET /sub/%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n"
                             b"Host: x\r\n\r\n")
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")), reply
    reply = raw_head(static, b"GET /a.txt%00.png HTTP/1.1\r\nRange: bytes=-2\r\n"
                             b"Host: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply  # a NUL never truncates the path


def test_serve_websocket_echo(static: Server) -> None:
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % static.port, timeout=10)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00\xffbin")
        assert ws.recv() == b"\x00\xffbin"
    finally:
        ws.close()
    static.wait_for(r'"GET /ws HTTP/1\.1" 101 -')


def test_serve_ws_path_without_upgrade_is_an_error(http: httpx.Client) -> None:
    assert http.get("/ws").status_code == 426


def test_serve_https(tmp_path: Path, webroot: str) -> None:
    from support.tls import Pki, client_context

    pki = Pki(str(tmp_path))
    issued = pki.issue("server", "localhost", ips=["127.0.0.1"])
    server = Server("serve", webroot, "--listen", "https://127.0.0.1:0",
                    "--cert", issued.cert_path, "--key", issued.key_path)
    assert server.url.startswith("https://127.0.0.1:")

    def fetch() -> httpx.Response:
        with httpx.Client(verify=client_context(pki.ca_path), timeout=10) as client:
            return client.get(server.url + "/a.txt", headers={"Range": "bytes=1-2"})

    res = fetch()
    assert res.status_code == 206 and res.content == b"12"
    server.wait_for(r'"GET /a\.txt HTTP/1\.1" 206 2')
    server.stop_cleanly()


def test_serve_refuses_an_unusable_key_up_front(tmp_path: Path, webroot: str) -> None:
    """The built-in stack cannot sign with RSA; OpenSSL refuses a key that
    belongs to another certificate.  Either stops before serving."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from support.tls import BUILTIN, Pki

    pki = Pki(str(tmp_path))
    issued = pki.issue("rsa", "localhost", key=rsa.generate_private_key(65537, 2048))
    key = issued.key_path if BUILTIN else pki.issue("other", "localhost").key_path
    res = run_cli("serve", webroot, "--listen", "https://127.0.0.1:0",
                  "--cert", issued.cert_path, "--key", key)
    assert res.returncode == 2
    assert ("EC P-256" if BUILTIN else "does not match") in res.stderr
    assert "Traceback" not in res.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_serve_ipv6(webroot: str) -> None:
    server = Server("serve", webroot, "--listen", "http://[::1]:0")
    assert server.url == "http://[::1]:%d" % server.port
    res = httpx.get(server.url + "/a.txt", timeout=10)
    assert res.content == A_TXT
    server.wait_for(r'::1 - - "GET /a\.txt HTTP/1\.1" 200 16')
    server.stop_cleanly()


def test_serve_defaults_to_the_current_directory_and_log_level(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_bytes(b"here")
    server = Server("--log-level", "WARNING", "serve", "--listen", "http://127.0.0.1:0",
                    cwd=str(tmp_path))
    assert httpx.get(server.url + "/here.txt", timeout=10).content == b"here"
    server.stop_cleanly()
    # An access line would be written before the response is sent.
    assert "cymongoose.access" not in server.output


# -- mqtt-broker -----------------------------------------------------------------


def test_mqtt_broker_with_paho() -> None:
    server = Server("mqtt-broker", "--listen", "mqtt://127.0.0.1:0")
    assert server.url == "mqtt://127.0.0.1:%d" % server.port
    topic = unique("cli")
    sub, pub = Paho(server.port), Paho(server.port)
    try:
        sub.sub(topic + "/+/temp", qos=1)
        pub.pub(topic + "/kitchen/temp", b"21.5", qos=1)
        pub.pub(topic + "/kitchen/humidity", b"40")  # does not match the wildcard
        # QoS 1: the PUBACK says the broker has stored it before "late" subscribes.
        pub.pub(topic + "/retained", b"kept", qos=1, retain=True)
        wait_until(lambda: sub.payloads(topic + "/kitchen/temp") == [b"21.5"])
        late = Paho(server.port)
        try:
            late.sub(topic + "/#")
            wait_until(lambda: late.payloads(topic + "/retained") == [b"kept"])
            assert late.messages[0].retain
        finally:
            late.stop()
        assert sub.payloads(topic + "/kitchen/humidity") == []
    finally:
        sub.stop()
        pub.stop()
    server.stop_cleanly()


def test_mqtt_broker_with_passwords_acl_and_persistence(tmp_path: Path) -> None:
    passwords, acl, store = tmp_path / "pw", tmp_path / "acl", tmp_path / "store.json"
    passwords.write_text("")
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), "alice", "pw"], check=True,
                   timeout=10)
    acl.write_text("user alice\ntopic readwrite kept/#\n")
    server = Server("mqtt-broker", "--listen", "mqtt://127.0.0.1:0", "--password-file",
                    str(passwords), "--acl-file", str(acl), "--persistence-file", str(store))
    alice = Paho(server.port, username="alice", password="pw")
    try:
        alice.pub("kept/x", b"retained", qos=1, retain=True)
    finally:
        alice.stop()
    server.stop_cleanly()
    assert "kept/x" in store.read_text()
    assert "refused" not in server.output


def test_mqtt_broker_bad_bridge_topic_is_a_usage_error() -> None:
    res = run_cli("mqtt-broker", "--listen", "mqtt://127.0.0.1:0", "--bridge",
                  "mqtt://127.0.0.1:1", "--bridge-topic", "a/# sideways")
    assert res.returncode == 2
    assert "bridge topic" in res.stderr


# -- wsgi and asgi -----------------------------------------------------------------

WSGI_APP = textwrap.dedent('''
    import threading

    both = threading.Barrier(2, timeout=10)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/pair":
            both.wait()  # passes only when two requests run at the same time
        body = ("wsgi %s %s %s" % (environ["REQUEST_METHOD"], path,
                                    environ["wsgi.input"].read().decode())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')

ASGI_APP = textwrap.dedent('''
    import asyncio
    import threading

    both = threading.Barrier(2, timeout=10)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                await send({"type": event["type"] + ".complete"})
                if event["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/pair":
            # Two blocking calls on the default executor at the same time.
            await asyncio.gather(asyncio.to_thread(both.wait), asyncio.to_thread(both.wait))
        text = "asgi %s %s %s" % (scope["method"], scope["path"], body.decode())
        if scope["path"] == "/loop":
            text = type(asyncio.get_running_loop()).__module__.split(".")[0]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text.encode()})
''')


@pytest.fixture
def app_dir(tmp_path: Path) -> str:
    (tmp_path / "cli_wsgi_app.py").write_text(WSGI_APP)
    (tmp_path / "cli_asgi_app.py").write_text(ASGI_APP)
    return str(tmp_path)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_app_from_the_current_directory(kind: str, app_dir: str) -> None:
    server = Server(kind, "cli_%s_app:app" % kind, "--listen", "http://127.0.0.1:0",
                    cwd=app_dir)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/hello").text == "%s GET /hello " % kind
        assert client.post("/form", content=b"a=1").text == "%s POST /form a=1" % kind
    server.stop_cleanly()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_app_dir_option_and_threads(kind: str, app_dir: str, tmp_path_factory:
                                    pytest.TempPathFactory) -> None:
    elsewhere = str(tmp_path_factory.mktemp("elsewhere"))
    server = Server(kind, "--app-dir", app_dir, "--threads", "2", "cli_%s_app:app" % kind,
                    "--listen", "http://127.0.0.1:0", cwd=elsewhere)
    if kind == "wsgi":
        # Two requests that each wait for the other: both succeed only on
        # two worker threads.
        with httpx.Client(base_url=server.url, timeout=15) as c1, \
                httpx.Client(base_url=server.url, timeout=15) as c2:
            import concurrent.futures
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda c: c.get("/pair"), [c1, c2]))
        assert [r.status_code for r in results] == [200, 200]
    else:
        assert httpx.get(server.url + "/pair", timeout=15).text == "asgi GET /pair "
    server.stop_cleanly()


@pytest.mark.parametrize("loop", ["auto", "asyncio", "uvloop"])
def test_asgi_loop_option(loop: str, app_dir: str) -> None:
    try:
        import uvloop  # noqa: F401
        have_uvloop = True
    except ImportError:  # not built for PyPy
        have_uvloop = False
    args = ("asgi", "--loop", loop, "cli_asgi_app:app", "--listen", "http://127.0.0.1:0")
    if loop == "uvloop" and not have_uvloop:
        result = run_cli(*args, cwd=app_dir)
        assert result.returncode == 2
        assert "uvloop is not installed" in result.stderr
        return
    server = Server(*args, cwd=app_dir)
    expected = "uvloop" if loop == "uvloop" or (loop == "auto" and have_uvloop) else "asyncio"
    assert httpx.get(server.url + "/loop", timeout=10).text == expected
    server.stop_cleanly()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_no_access_log_option(kind: str, app_dir: str) -> None:
    args = (kind, "cli_%s_app:app" % kind, "--listen", "http://127.0.0.1:0")
    logged = Server(*args, cwd=app_dir)
    assert httpx.get(logged.url + "/seen", timeout=10).status_code == 200
    logged.wait_for(r'cymongoose\.access: .*"GET /seen HTTP/1\.1" 200')
    logged.stop_cleanly()
    quiet = Server("--no-access-log", *args, cwd=app_dir)
    assert httpx.get(quiet.url + "/unseen", timeout=10).status_code == 200
    quiet.stop_cleanly()  # the log writer has written everything by the exit
    assert "cymongoose.access" not in quiet.output and "/unseen" not in quiet.output


def test_wsgi_inline_runs_the_app_on_the_event_loop_thread(app_dir: str) -> None:
    server = Server("wsgi", "--inline", "cli_wsgi_app:app", "--listen", "http://127.0.0.1:0",
                    cwd=app_dir)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/hello").text == "wsgi GET /hello "
        assert client.post("/form", content=b"a=1").text == "wsgi POST /form a=1"
    server.stop_cleanly()
    assert "WSGI server (inline)" in server.output


def test_asgi_lifespan_startup_failure_exits_3(tmp_path: Path) -> None:
    (tmp_path / "cli_bad_life.py").write_text(textwrap.dedent('''
        async def app(scope, receive, send):
            assert scope["type"] == "lifespan"
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
    '''))
    res = run_cli("asgi", "cli_bad_life:app", "--listen", "http://127.0.0.1:0",
                  cwd=str(tmp_path))
    assert res.returncode == 3, res.stderr
    assert "ASGI lifespan startup failed: no database" in res.stderr
    assert "Traceback" not in res.stderr


def test_unimportable_app_module_names_it(tmp_path: Path) -> None:
    res = run_cli("asgi", "no_such_module_cym:app", cwd=str(tmp_path))
    assert res.returncode == 2
    assert "cannot import module 'no_such_module_cym'" in res.stderr


def test_console_entry_point_is_main() -> None:
    from cymongoose.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0


# -- every server subcommand stops on Ctrl-C -----------------------------------------


@pytest.mark.parametrize("kind", ["serve", "mqtt-broker", "wsgi", "asgi"])
def test_stops_on_ctrl_c_with_a_client_connected(kind: str, webroot: str, app_dir: str) -> None:
    args = {"serve": ["serve", webroot, "--listen", "http://127.0.0.1:0"],
            "mqtt-broker": ["mqtt-broker", "--listen", "mqtt://127.0.0.1:0"],
            "wsgi": ["wsgi", "cli_wsgi_app:app", "--listen", "http://127.0.0.1:0"],
            "asgi": ["asgi", "cli_asgi_app:app", "--listen", "http://127.0.0.1:0"]}[kind]
    server = Server(*args, cwd=app_dir)
    if kind == "mqtt-broker":
        client = Paho(server.port)
        try:
            server.stop_cleanly()
            assert client.disconnected.wait(10)
        finally:
            client.stop()
        return
    with httpx.Client(timeout=10) as http_client:  # keep-alive: the connection stays open
        path = "/a.txt" if kind == "serve" else "/x"
        assert http_client.get(server.url + path).status_code == 200
        server.stop_cleanly()
