"""The HTTP examples, each run as a subprocess and driven by a real client."""

import os

import httpx
import pytest

from support.subprocs import EXAMPLES, run_example

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="needs the source tree's examples/")

LISTEN = ("--listen", "http://127.0.0.1:0")


@pytest.fixture
def run(start_example):
    def start(name, *args):
        proc, port = start_example(name, *args)
        return proc, "http://127.0.0.1:%d" % port

    return start


def test_demo_server(run):
    _, base = run("demo_server.py", *LISTEN)
    assert httpx.get(base + "/hello").text.startswith("Hello")
    assert httpx.get(base + "/api/info").json()["server"] == "cymongoose"
    assert "cymongoose demo" in httpx.get(base + "/").text


def test_http_server(run):
    _, base = run("http_server.py", *LISTEN)
    assert httpx.get(base + "/hello", params={"name": "Ada Lovelace"}).text == "Hello, Ada Lovelace!\n"
    r = httpx.post(base + "/echo", content=b"\x00\x01binary", headers={"Content-Type": "x/y"})
    assert r.content == b"\x00\x01binary" and r.headers["content-type"] == "x/y"
    assert "X-Probe: 1" in httpx.get(base + "/headers", headers={"X-Probe": "1"}).text
    assert httpx.get(base + "/nope").status_code == 404


def test_http_server_ipv6_prints_the_address_it_listens_on(start_example):
    proc, port = start_example("http_server.py", "--listen", "http://[::1]:0")
    assert "http://[::1]:%d/" % port in proc.output
    assert httpx.get("http://[::1]:%d/hello" % port).text == "Hello, world!\n"


def test_static_files(run, tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    _, base = run("static_files.py", "--root", str(tmp_path), *LISTEN)
    r = httpx.get(base + "/a.txt")
    assert r.text == "alpha" and r.headers["content-type"].startswith("text/plain")
    assert httpx.get(base + "/a.txt", headers={"Range": "bytes=1-2"}).text == "lp"
    assert "a.txt" in httpx.get(base + "/").text  # directory listing


def test_rest_api(run):
    _, base = run("rest_api.py", *LISTEN)
    created = httpx.post(base + "/api/notes", json={"text": "buy milk"})
    assert created.status_code == 201
    note_id = created.json()["id"]
    assert httpx.get(base + "/api/notes").json() == [{"id": note_id, "text": "buy milk"}]
    assert httpx.get(base + "/api/notes/%d" % note_id).json()["text"] == "buy milk"
    assert httpx.delete(base + "/api/notes/%d" % note_id).status_code == 204
    assert httpx.get(base + "/api/notes/%d" % note_id).status_code == 404
    assert httpx.post(base + "/api/notes", content=b"{").status_code == 400


def test_file_upload(run, tmp_path):
    _, base = run("file_upload.py", "--dir", str(tmp_path), *LISTEN)
    payload = bytes(range(256)) * 100
    r = httpx.post(base + "/upload", files={"file": ("../../evil.bin", payload)}, data={"note": "x"})
    assert r.json() == {"saved": [{"name": "evil.bin", "size": len(payload)}]}
    assert (tmp_path / "evil.bin").read_bytes() == payload


def test_sse(run):
    _, base = run("sse.py", "--interval-ms", "50", *LISTEN)
    events = []
    with httpx.stream("GET", base + "/events", timeout=10) as r:
        assert r.headers["content-type"] == "text/event-stream"
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line)
            if len(events) == 3:
                break
    assert events == ["event: tick"] * 3


def test_chunked_streaming(run):
    _, base = run("chunked_streaming.py", *LISTEN)
    with httpx.stream("GET", base + "/count", params={"n": 200000}, timeout=20) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        body = b"".join(r.iter_bytes())
    assert body.split(b"\n")[:-1] == [str(i).encode() for i in range(1, 200001)]


def test_http_client(run):
    _, base = run("http_server.py", *LISTEN)
    out = run_example("http_client.py", "--url", base + "/hello?name=client")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP 200") and "Hello, client!" in out.stdout


def test_http_client_reports_refused_connection():
    out = run_example("http_client.py", "--url", "http://127.0.0.1:1/", "--timeout", "5")
    assert out.returncode == 1 and out.stderr.startswith("error:")
