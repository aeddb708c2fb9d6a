"""Static files against RFC 9110 (ranges, conditional requests, Vary, safe paths),
for ``serve_dir`` in process and for the ``serve`` command line, with httpx and curl."""

import email.utils
import gzip
import os
import socket
import subprocess
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

import cymongoose as cm
from support.cli import Server
from support.loop import LoopThread, serve
from support.sockets import read_until, read_until_closed

A_TXT = b"0123456789"  # 10 bytes, as in the bug report
MTIME = 1_700_000_000  # fixed, so dates before/after are known


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    base = tmp_path_factory.mktemp("rfc9110")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    root = base / "www"
    root.mkdir()
    files = {
        "a.txt": A_TXT, "page.html": b"<p>", "app.js.gz": gzip.compress(b"1;"), "app.js": b"1;",
        "m.mjs": b"", "x.wasm": b"\0asm", "i.webp": b"", "i.avif": b"", "f.woff2": b"",
        "d.json": b"{}", "s.svg": b"<svg/>", ".env": b"KEY=1", ".git/config": b"[core]",
        "assets/logo.png": b"\x89PNG",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    os.symlink(str(outside / "secret.txt"), str(root / "out-link.txt"))
    os.symlink(str(root / "a.txt"), str(root / "in-link.txt"))
    (root / "lib.js").write_bytes(b"2;")  # its .gz twin leads out of the root
    (outside / "lib.js.gz").write_bytes(gzip.compress(b"secret"))
    os.symlink(str(outside / "lib.js.gz"), str(root / "lib.js.gz"))
    return {"root": str(root)}


def _handler(root: str, follow: bool) -> Callable[..., None]:
    def handler(conn: cm.Connection, ev: int, hm: cm.HttpMessage) -> None:
        if ev != cm.MG_EV_HTTP_MSG:
            return
        if hm.uri == "/one":
            conn.serve_file(hm, os.path.join(root, "a.txt"), cache_control="no-cache")
        else:
            conn.serve_dir(hm, root, follow_symlinks=follow,
                           cache_control={"/assets/*": "max-age=86400, immutable",
                                          "*.html": "no-cache"})
    return handler


@pytest.fixture(scope="module")
def module_server() -> Iterator[Callable[..., int]]:
    """Start in-process servers with ``module_server(handler)``; all stop at teardown."""
    started: List[LoopThread] = []

    def start(handler: Callable[..., None]) -> int:
        loop, port = serve(handler)
        started.append(loop)
        return int(port)
    yield start
    for loop in started:
        loop.stop()
        loop.mgr.close()


@pytest.fixture(scope="module", params=["serve_dir", "cli"])
def base(request: pytest.FixtureRequest, tree: Dict[str, str],
         module_server: Callable[..., int]) -> Iterator[str]:
    """The URL of serve_dir (in process) or of ``serve --cache-control`` (a child)."""
    if request.param == "serve_dir":
        yield "http://127.0.0.1:%d" % module_server(_handler(tree["root"], True))
    else:
        server = Server("serve", tree["root"], "--listen", "http://127.0.0.1:0",
                        "--cache-control", "max-age=60")
        yield server.url
        server.stop_cleanly()


def is_cli(client: httpx.Client) -> bool:
    """The CLI sends its one ``--cache-control`` value on every file."""
    return client.get("/a.txt").headers.get("cache-control") == "max-age=60"


@pytest.fixture(scope="module")
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as c:
        yield c


def raw(base: str, request: bytes) -> bytes:
    """Send ``request`` byte for byte (clients would normalise it); the response head."""
    host, port = base.rsplit(":", 1)
    with socket.create_connection((host.split("//")[1], int(port)), timeout=10) as s:
        s.sendall(request)
        return read_until(s, lambda reply: b"\r\n\r\n" in reply)


def curl(*args: str) -> Tuple[str, bytes]:
    """``curl -s -D - ARGS``: (header block, body)."""
    out = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-D", "/dev/stderr"] +
                         list(args), capture_output=True, timeout=30, check=True)
    return out.stderr.decode("latin-1"), out.stdout


# -- ranges -----------------------------------------------------------------------

@pytest.mark.parametrize("rng, status, content_range, body", [
    ("bytes=2-5", 206, "bytes 2-5/10", b"2345"),
    ("bytes=7-", 206, "bytes 7-9/10", b"789"),
    ("bytes=-3", 206, "bytes 7-9/10", b"789"),          # suffix: the last 3
    ("bytes=-30", 206, "bytes 0-9/10", A_TXT),
    ("bytes=8-100", 206, "bytes 8-9/10", b"89"),        # clamped to the end
    ("bytes=1-1,", 206, "bytes 1-1/10", b"1"),
    ("bytes=10-", 416, "bytes */10", b""),
    ("bytes=-0", 416, "bytes */10", b""),
    ("bytes=20-30, 40-", 200, None, A_TXT),             # several: the whole file
    ("bytes=0-1,4-5", 200, None, A_TXT),
    ("bytes=5-2", 200, None, A_TXT),                    # invalid: ignored
    ("bytes=abc", 200, None, A_TXT),
    ("items=0-1", 200, None, A_TXT),
])
def test_ranges(client: httpx.Client, rng: str, status: int,
                content_range: Optional[str], body: bytes) -> None:
    r = client.get("/a.txt", headers={"Range": rng})
    assert (r.status_code, r.headers.get("content-range"), r.content) == \
        (status, content_range, body)
    assert r.headers["content-length"] == str(len(body))
    if status != 416:
        assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("opt, body", [("2-5", b"2345"), ("7-", b"789"), ("-3", b"789")])
def test_ranges_with_curl(base: str, opt: str, body: bytes) -> None:
    head, got = curl("-r", opt, base + "/a.txt")
    assert head.startswith("HTTP/1.1 206") and got == body


def test_serve_file_suffix_range(client: httpx.Client) -> None:
    r = client.get("/one", headers={"Range": "bytes=-3"})
    if is_cli(client):
        assert r.status_code == 404
        return
    assert (r.status_code, r.content, r.headers["cache-control"]) == (206, b"789", "no-cache")


def test_if_range(client: httpx.Client) -> None:
    full = client.get("/a.txt")
    etag, date = full.headers["etag"], full.headers["last-modified"]
    assert client.get("/a.txt", headers={"Range": "bytes=-3", "If-Range": etag}).status_code == 206
    assert client.get("/a.txt", headers={"Range": "bytes=-3", "If-Range": date}).status_code == 206
    for stale in ('"other"', "W/" + etag, email.utils.formatdate(MTIME - 5, usegmt=True)):
        r = client.get("/a.txt", headers={"Range": "bytes=-3", "If-Range": stale})
        assert (r.status_code, r.content) == (200, A_TXT), stale


# -- conditional requests -----------------------------------------------------------

def test_last_modified_on_every_file(client: httpx.Client) -> None:
    for name in ("a.txt", "page.html", "assets/logo.png"):
        r = client.get("/" + name)
        assert r.headers["last-modified"] == email.utils.formatdate(MTIME, usegmt=True)


def _date(t: int) -> str:
    return email.utils.formatdate(t, usegmt=True)


@pytest.mark.parametrize("headers, method, status", [
    ({"If-None-Match": "ETAG"}, "GET", 304),
    ({"If-None-Match": "ETAG"}, "HEAD", 304),
    ({"If-None-Match": '"x", ETAG'}, "GET", 304),            # a list
    ({"If-None-Match": "*"}, "GET", 304),
    ({"If-None-Match": "W/ETAG"}, "GET", 304),               # weak comparison
    ({"If-None-Match": '"x"'}, "GET", 200),
    ({"If-None-Match": "ETAG"}, "DELETE", 412),
    ({"If-Modified-Since": _date(MTIME)}, "GET", 304),
    ({"If-Modified-Since": _date(MTIME + 60)}, "GET", 304),
    ({"If-Modified-Since": _date(MTIME - 60)}, "GET", 200),
    ({"If-Modified-Since": "yesterday"}, "GET", 200),        # invalid date: ignored
    ({"If-None-Match": '"x"', "If-Modified-Since": _date(MTIME)}, "GET", 200),  # INM wins
    ({"If-Unmodified-Since": _date(MTIME - 60)}, "GET", 412),
    ({"If-Unmodified-Since": _date(MTIME)}, "GET", 200),
    ({"If-Match": '"x"'}, "GET", 412),
    ({"If-Match": "W/ETAG"}, "GET", 412),                    # strong comparison
    ({"If-Match": "ETAG", "If-Unmodified-Since": _date(MTIME - 60)}, "GET", 200),
    ({"If-Match": "*", "If-None-Match": "ETAG"}, "GET", 304),
])
def test_preconditions(client: httpx.Client, headers: Dict[str, str], method: str,
                       status: int) -> None:
    etag = client.get("/a.txt").headers["etag"]
    sent = {k: v.replace("ETAG", etag) for k, v in headers.items()}
    r = client.request(method, "/a.txt", headers=sent)
    if method == "DELETE" and is_cli(client):
        status = 405  # the CLI answers GET and HEAD only
    assert r.status_code == status
    if status == 304:
        assert r.content == b"" and r.headers["etag"] == etag
        assert "last-modified" in r.headers


def test_conditionals_with_curl(base: str) -> None:
    head, body = curl("-z", _date(MTIME + 60), base + "/a.txt")   # If-Modified-Since
    assert head.startswith("HTTP/1.1 304") and body == b""
    head, body = curl("-z", "-" + _date(MTIME - 60), base + "/a.txt")  # If-Unmodified-Since
    assert head.startswith("HTTP/1.1 412")


# -- headers ------------------------------------------------------------------------

def test_vary_when_a_gzip_twin_exists(client: httpx.Client) -> None:
    gz = client.get("/app.js", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.headers["vary"] == "Accept-Encoding"
    plain = client.get("/app.js", headers={"Accept-Encoding": "identity"})
    assert plain.content == b"1;" and plain.headers["vary"] == "Accept-Encoding"
    assert "vary" not in client.get("/a.txt").headers


def test_cache_control(client: httpx.Client, base: str) -> None:
    png = client.get("/assets/logo.png").headers.get("cache-control")
    html = client.get("/page.html").headers.get("cache-control")
    txt = client.get("/a.txt").headers.get("cache-control")
    if is_cli(client):
        assert html == txt == "max-age=60"
    else:
        assert (png, html, txt) == ("max-age=86400, immutable", "no-cache", None)


@pytest.mark.parametrize("name, mime", [
    ("m.mjs", "text/javascript"), ("x.wasm", "application/wasm"), ("i.webp", "image/webp"),
    ("i.avif", "image/avif"), ("f.woff2", "font/woff2"), ("d.json", "application/json"),
    ("s.svg", "image/svg+xml"),
])
def test_modern_mime_types(client: httpx.Client, name: str, mime: str) -> None:
    assert client.get("/" + name).headers["content-type"].split(";")[0] == mime


@pytest.mark.parametrize("headers", [[], ["-H", "Range: bytes=-3"],
                                     ["-H", "Accept-Encoding: gzip"]])
def test_head_has_the_headers_of_get(base: str, headers: List[str]) -> None:
    # curl, not httpx: httpx fails decoding the empty gzip body of a HEAD.
    def lines(head: str) -> List[str]:
        return sorted(line for line in head.splitlines() if not line.lower().startswith(
            ("date:", "content-range:", "content-length:", "http/1.1")))
    get_head, get_body = curl(*headers, base + "/app.js")
    head_head, head_body = curl("-I", *headers, base + "/app.js")
    assert head_body == head_head.encode("latin-1") and get_body  # -I prints the head only
    assert lines(head_head) == lines(get_head)
    # RFC 9110 14.2: HEAD ignores Range, so its length is the whole file's
    assert head_head.startswith("HTTP/1.1 200")


# -- safe paths -----------------------------------------------------------------------

@pytest.mark.parametrize("path", [b"/a.txt%00.html", b"/a.txt%00", b"/a%0a.txt", b"/a%01.txt",
                                  b"/a%7f.txt", b"/a.txt%0d%0aX: y"])
def test_control_characters_get_400(base: str, path: bytes) -> None:
    reply = raw(base, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply


@pytest.mark.parametrize("target, body", [
    (b"http://example.com/a.txt", A_TXT),
    (b"HTTPS://example.com:8443/a.txt", A_TXT),
    (b"http://example.com/../outside/secret.txt", None),  # refused, as in the origin form
    (b"/a.txt#fragment", A_TXT),  # RFC 9112 section 3.2: a fragment is no part of a target
    (b"http://example.com/a.txt#f", A_TXT),
])
def test_an_absolute_form_target_serves_its_path(base: str, target: bytes,
                                                 body: Optional[bytes]) -> None:
    """RFC 9112 section 3.2.2: an origin server must accept the absolute form
    (what a client sends to a proxy), and it names the same file as its path."""
    host, port = base.rsplit(":", 1)
    with socket.create_connection((host.split("//")[1], int(port)), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_until_closed(s)
    if body is not None:
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n" + body)
    else:
        assert reply[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 404") and b"secret" not in reply


def test_two_host_lines_get_400(base: str) -> None:
    """RFC 9112 section 3.2: a request with more than one Host line gets 400."""
    reply = raw(base, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and A_TXT not in reply


def test_nul_with_curl(base: str) -> None:
    head, _ = curl(base + "/a.txt%00.html")
    assert head.startswith("HTTP/1.1 400")


def test_symlinks_followed_by_default(client: httpx.Client) -> None:
    assert client.get("/in-link.txt").content == A_TXT
    assert client.get("/out-link.txt").content == b"secret"


def test_dotfiles_hidden_by_the_cli_only(client: httpx.Client) -> None:
    env, git = client.get("/.env"), client.get("/.git/config")
    if is_cli(client):
        assert env.status_code == git.status_code == 404
        assert raw(str(client.base_url), b"GET /%2eenv HTTP/1.1\r\n\r\n").startswith(
            b"HTTP/1.1 404")
    else:
        assert (env.content, git.content) == (b"KEY=1", b"[core]")


def test_symlink_policy_stay_inside(tree: Dict[str, str], module_server: Callable[..., int]) -> None:
    port = module_server(_handler(tree["root"], False))
    with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10) as c:
        assert c.get("/in-link.txt").content == A_TXT
        assert c.get("/out-link.txt").status_code == 404
        assert c.get("/a.txt").content == A_TXT
        assert c.get("/lib.js", headers={"Accept-Encoding": "gzip"}).status_code == 404


@pytest.mark.parametrize("extra, out_link, env", [
    ([], 200, 404), (["--no-follow-symlinks"], 404, 404), (["--dotfiles"], 200, 200),
])
def test_cli_symlink_and_dotfile_flags(tree: Dict[str, str], extra: List[str], out_link: int,
                                       env: int) -> None:
    server = Server("serve", tree["root"], "--listen", "http://127.0.0.1:0", *extra)
    try:
        head, _ = curl(server.url + "/out-link.txt")
        assert head.startswith("HTTP/1.1 %d" % out_link)
        head, _ = curl(server.url + "/.env")
        assert head.startswith("HTTP/1.1 %d" % env)
        head, body = curl(server.url + "/in-link.txt")
        assert body == A_TXT
    finally:
        server.stop_cleanly()


@pytest.mark.parametrize("value, error", [
    ("max-age=1\r\nX-Evil: 1", ValueError), ("x" * 300, ValueError), (42, TypeError),
])
def test_bad_cache_control_raises(tree: Dict[str, str], value: object,
                                  error: type) -> None:
    failures: List[BaseException] = []

    def handler(conn: cm.Connection, ev: int, hm: cm.HttpMessage) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            try:
                conn.serve_dir(hm, tree["root"], cache_control=value)  # type: ignore
            except Exception as exc:
                failures.append(exc)
                conn.reply(500, b"")

    loop, port = serve(handler)
    try:
        assert httpx.get("http://127.0.0.1:%d/a.txt" % port, timeout=10).status_code == 500
        assert len(failures) == 1 and isinstance(failures[0], error)
    finally:
        loop.stop()
        loop.mgr.close()
