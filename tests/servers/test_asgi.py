"""cymongoose.asgi: FastAPI/Starlette apps and plain ASGI apps served for
real, driven by httpx, raw sockets and WebSocket client libraries."""

import asyncio
import contextlib
import gc
import hashlib
import importlib.util
import platform
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Optional

import httpx
import pytest

import cymongoose
from cymongoose._asgi_scope import http_scope
from cymongoose.asgi import ASGIServer, ClientDisconnected
from support.loop import wait_until
from support.servers import (AsgiThread, check_form_and_10mib_upload, count_responses, raw_exchange,
                             started)
from support.sockets import read_until
from support.subprocs import run_python
from support.ws import SyncClient

MiB = 1024 * 1024
IS_PYPY = platform.python_implementation() == "PyPy"

try:
    import fastapi
except ImportError:
    fastapi = None
try:
    import starlette
except ImportError:
    starlette = None
if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
    starlette = None  # python-multipart, Starlette's form parser, is missing

NO_FASTAPI = "FastAPI is not installed (pip install cymongoose[%s])" % (
    "frameworks-pypy" if IS_PYPY else "frameworks")
needs_ws = pytest.mark.skipif(not hasattr(cymongoose.Connection, "ws_upgrade"),
                              reason="Connection.ws_upgrade/ws_send (WebSocket support) "
                                     "is not in this build yet")


class Shared:
    """What the test apps record, and a gate the tests open."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.events: List[str] = []
        self.ports: List[int] = []
        self.closed = threading.Event()
        self.ws_codes: List[int] = []

    async def wait_gate(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10)


async def endless(shared: Shared) -> Any:
    """A body that never ends; ``shared.closed`` is set once the server stops reading it."""
    try:
        while True:
            yield b"z" * 65536
            await asyncio.sleep(0)
    finally:
        shared.closed.set()


def recorded_lifespan(shared: Shared) -> Any:
    """A lifespan that records startup and shutdown and puts ``answer`` in the state."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        shared.events.append("startup")
        yield {"answer": 42}
        shared.events.append("shutdown")

    return lifespan


def make_fastapi_app(shared: Shared) -> Any:
    from fastapi import FastAPI, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
    from fastapi.responses import PlainTextResponse, StreamingResponse
    from pydantic import BaseModel

    lifespan = recorded_lifespan(shared)

    app = FastAPI(lifespan=lifespan)

    class Item(BaseModel):
        name: str
        price: float

    @app.get("/", response_class=PlainTextResponse)
    async def index(request: Request):
        shared.ports.append(request.client.port)
        return "hello"

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: Optional[str] = None):
        return {"item": item_id, "q": q}

    @app.post("/json")
    async def echo_json(item: Item):
        return {"received": {"name": item.name, "price": item.price}}

    @app.post("/form", response_class=PlainTextResponse)
    async def form(name: str = Form(...), age: int = Form(...)):
        return "name=%s age=%d" % (name, age)

    @app.post("/upload")
    async def upload(file: UploadFile):
        data = await file.read()
        return {"name": file.filename, "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}

    @app.get("/stream")
    async def stream():
        async def gen():
            yield b"first\n"
            await shared.wait_gate()
            yield b"second\n"
        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/forever")
    async def forever():
        return StreamingResponse(endless(shared))

    @app.get("/state")
    async def state(request: Request):
        return {"answer": request.state.answer}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("route failed")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect as exc:
            shared.ws_codes.append(exc.code)

    return app


def make_starlette_app(shared: Shared) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    lifespan = recorded_lifespan(shared)

    async def index(request):
        shared.ports.append(request.client.port)
        return PlainTextResponse("hello")

    async def item(request):
        return JSONResponse({"item": int(request.path_params["item_id"]),
                             "q": request.query_params.get("q")})

    async def echo_json(request):
        data = await request.json()
        return JSONResponse({"received": {"name": data["name"], "price": float(data["price"])}})

    async def form(request):
        f = await request.form()
        return PlainTextResponse("name=%s age=%d" % (f["name"], int(f["age"])))

    async def upload(request):
        f = (await request.form())["file"]
        data = await f.read()
        return JSONResponse({"name": f.filename, "size": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()})

    async def stream(request):
        async def gen():
            yield b"first\n"
            await shared.wait_gate()
            yield b"second\n"
        return StreamingResponse(gen(), media_type="text/plain")

    async def forever(request):
        return StreamingResponse(endless(shared))

    async def state(request):
        return JSONResponse({"answer": request.state.answer})

    async def fail(request):
        raise RuntimeError("route failed")

    return Starlette(lifespan=lifespan, routes=[
        Route("/", index), Route("/items/{item_id}", item),
        Route("/json", echo_json, methods=["POST"]), Route("/form", form, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]), Route("/stream", stream),
        Route("/forever", forever), Route("/state", state), Route("/fail", fail)])


FRAMEWORKS = [
    pytest.param("fastapi", marks=pytest.mark.skipif(fastapi is None, reason=NO_FASTAPI)),
    pytest.param("starlette", marks=pytest.mark.skipif(
        starlette is None, reason="Starlette or python-multipart is not installed")),
]


@pytest.fixture
def start():
    """``start(app, **options)`` serves an ASGI app; all stop at teardown."""
    yield from started(AsgiThread)


@pytest.fixture(params=FRAMEWORKS)
def framework(request, start):
    shared = Shared()
    factory = make_fastapi_app if request.param == "fastapi" else make_starlette_app
    srv = start(factory(shared))
    srv.shared = shared
    yield srv
    shared.gate.set()


# -- frameworks --------------------------------------------------------------------


def test_routes_json_state_404_500(framework, caplog):
    with httpx.Client(base_url=framework.url, timeout=10) as c:
        r = c.get("/")
        assert (r.status_code, r.text) == (200, "hello")
        assert c.get("/items/7", params={"q": "ü x"}).json() == {"item": 7, "q": "ü x"}
        r = c.post("/json", json={"name": "pen", "price": 1.5})
        assert r.json() == {"received": {"name": "pen", "price": 1.5}}
        assert c.get("/state").json() == {"answer": 42}  # lifespan state reaches requests
        assert c.get("/missing").status_code == 404
        r = c.get("/fail")
        assert r.status_code == 500
        assert c.get("/").text == "hello"  # still serving, same connection
    assert "route failed" in caplog.text
    assert any(r.name == "cymongoose.asgi" and r.levelname == "ERROR" for r in caplog.records)


def test_form_and_10mib_upload(framework):
    check_form_and_10mib_upload(framework.url)


def test_streaming_response_is_read_incrementally(framework):
    with httpx.Client(base_url=framework.url, timeout=10) as c:
        with c.stream("GET", "/stream") as r:
            pieces = r.iter_raw()
            assert next(pieces) == b"first\n"  # while the generator waits on the gate
            framework.shared.gate.set()
            assert b"".join(pieces) == b"second\n"


def test_100_keep_alive_requests_and_50_clients(framework):
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=framework.url, limits=limits, timeout=10) as c:
        assert [c.get("/").text for _ in range(100)] == ["hello"] * 100
    assert len(framework.shared.ports) == 100 and len(set(framework.shared.ports)) == 1

    def client(i):
        with httpx.Client(base_url=framework.url, timeout=30) as c:
            return c.get("/items/%d" % i).json()["item"]

    with ThreadPoolExecutor(50) as pool:
        assert list(pool.map(client, range(50))) == list(range(50))


def test_client_disconnect_mid_stream(framework):
    with socket.create_connection(("127.0.0.1", framework.port), timeout=10) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(s, lambda d: len(d) > 300000)
    # The response's send() raised, so Starlette dropped the generator; it is
    # closed when collected (at once on CPython, at a GC run on PyPy).
    def generator_closed():
        gc.collect()
        return framework.shared.closed.is_set()
    wait_until(generator_closed)
    server = framework.server
    wait_until(lambda: not server._running)
    wait_until(lambda: len(server.manager.connections) == 1)  # only the listener


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_lifespan_events_are_observed(name):
    shared = Shared()
    factory = make_fastapi_app if name == "fastapi" else make_starlette_app
    srv = AsgiThread(factory(shared))
    try:
        assert shared.events == ["startup"]
        assert httpx.get(srv.url + "/state", timeout=10).json() == {"answer": 42}
    finally:
        srv.stop()
    assert shared.events == ["startup", "shutdown"]


@needs_ws
@pytest.mark.skipif(fastapi is None, reason=NO_FASTAPI)
def test_fastapi_websocket_echo(start):
    import websocket  # websocket-client

    shared = Shared()
    srv = start(make_fastapi_app(shared))
    ws = websocket.create_connection(srv.ws_url + "/ws", timeout=10)
    try:
        for text in ["hello", "ü" * 1000, "x" * 100000]:
            ws.send(text)
            assert ws.recv() == text
    finally:
        ws.close(status=4000)
    wait_until(lambda: shared.ws_codes == [4000])


# -- plain ASGI apps ---------------------------------------------------------------


def test_scope_contents(start):
    seen = {}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    srv = start(app)
    r = httpx.get(srv.url + "/a%20b/c?x=1&y=%20", headers={"X-Test": "v"}, timeout=10)
    assert r.status_code == 204
    assert seen["type"] == "http" and seen["method"] == "GET"
    assert seen["asgi"]["version"] == "3.0"
    assert seen["http_version"] == "1.1" and seen["scheme"] == "http"
    assert seen["path"] == "/a b/c" and seen["raw_path"] == b"/a%20b/c"
    assert seen["query_string"] == b"x=1&y=%20" and seen["root_path"] == ""
    assert [b"x-test", b"v"] in [list(h) for h in seen["headers"]]
    assert list(seen["server"]) == ["127.0.0.1", srv.port]
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0


def test_http_scope_accepts_duck_typed_objects():
    class Hm:
        method, uri, query, proto = "POST", "/x%2Fy", "a=%41", "HTTP/1.0"

        def header(self, name, default=None):
            return default

        def headers(self):
            return [("Content-Type", "text/plain")]

    class Conn:
        is_tls = False
        remote_addr = None

    scope, connection = http_scope(Hm(), Conn(), "srv", 81)
    assert connection is None
    assert scope["path"] == "/x/y" and scope["raw_path"] == b"/x%2Fy"
    assert scope["query_string"] == b"a=%41" and scope["http_version"] == "1.0"
    assert scope["headers"] == [(b"content-type", b"text/plain")]
    assert scope["client"] == ["127.0.0.1", 0] and scope["server"] == ["srv", 81]


def test_request_body_streams_with_back_pressure(start):
    gate = threading.Event()
    pieces: List[int] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 20)
        digest = hashlib.sha256()
        while True:
            message = await receive()
            pieces.append(len(message["body"]))
            digest.update(message["body"])
            if not message["more_body"]:
                break
        body = digest.hexdigest().encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    srv = start(app)
    data = bytes(range(256)) * (32 * MiB // 256)
    result = []
    t = threading.Thread(target=lambda: result.append(
        httpx.post(srv.url, content=data, timeout=30)))
    t.start()

    def paused_peer():
        for conn in srv.server.manager.connections:
            peer = conn.userdata
            if peer is not None and peer.paused:
                return peer
        return None
    try:
        peer = wait_until(paused_peer)  # the app reads nothing: the server stopped reading
        assert peer.conn.is_full  # Connection.is_full reports the receive-side pause
        assert peer.ex.unread < 2 * MiB  # memory stays bounded
        assert t.is_alive()  # so the client cannot finish sending
    finally:
        gate.set()
        t.join(30)
    assert result[0].text == hashlib.sha256(data).hexdigest()
    assert len(pieces) > 1 and sum(pieces) == len(data)


def test_chunked_request_body_and_413(start):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    srv = start(app, max_body_size=100000)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.post("/", content=iter([b"a" * 30000, b"b" * 30000])).text == "60000"
        assert c.post("/", content=b"x" * 100001).status_code == 413
    r = httpx.post(srv.url, content=iter([b"a" * 60000, b"b" * 60000]), timeout=10)
    assert r.status_code == 413


def test_keep_alive_and_pipelining(start):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    srv = start(app)
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    got = raw_exchange(srv.port, reqs, lambda d: count_responses(d) == 5 and d.endswith(b"/4"))
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in got.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4"]
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert all(c.get("/k").text == "/k" for _ in range(100))


def test_streaming_chunked_then_http_disconnect(start):
    gate = threading.Event()
    outcome: List[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        outcome.append((await receive())["type"])  # the client is gone by now
        try:
            await send({"type": "http.response.body", "body": b"two", "more_body": True})
        except ClientDisconnected as exc:
            outcome.append(isinstance(exc, OSError))

    srv = start(app)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_until(s, lambda d: d.endswith(b"one\r\n"))
        assert b"Transfer-Encoding: chunked" in got
    wait_until(lambda: len(srv.server.manager.connections) == 1)
    gate.set()
    wait_until(lambda: len(outcome) == 2)
    assert outcome == ["http.disconnect", True]
    wait_until(lambda: not srv.server._running)


def test_app_errors_give_500_and_are_logged(start, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/raise":
            raise ValueError("asgi app exploded")
        if scope["path"] == "/nothing":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    srv = start(app)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.get("/raise")
        assert (r.status_code, r.text) == (500, "Internal Server Error")
        assert c.get("/nothing").status_code == 500
        assert c.get("/").text == "ok"
    assert "asgi app exploded" in caplog.text and "Traceback" in caplog.text


def test_bad_response_headers_give_500_and_nothing_of_them_leaks(start, caplog):
    bad = {
        "/crlf": [(b"x-a", b"1\r\nSet-Cookie: stolen=1")],
        "/lf-name": [(b"x-a\nx-b", b"1")],
        "/nul": [(b"x-a", b"a\0b")],
        "/str": [("x-a", "1")],
        "/length": [(b"content-length", b"two")],
        "/empty-name": [(b"", b"x")],
        "/three": [(b"x-a", b"1", b"2")],
    }

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = bad.get(scope["path"], [(bytearray(b"x-ok"), memoryview(b"yes"))])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    srv = start(app)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for path in bad:
            r = c.get(path)
            assert (r.status_code, r.text) == (500, "Internal Server Error"), path
            assert "x-a" not in r.headers and "set-cookie" not in r.headers
        r = c.get("/")  # bytes-like names and values are taken as bytes
        assert (r.status_code, r.headers["x-ok"], r.text) == (200, "yes", "ok")
    assert "control character" in caplog.text and "must be bytes" in caplog.text
    assert "invalid Content-Length" in caplog.text


def test_bodies_that_break_their_content_length(start, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        length = {"/long": b"2", "/short": b"10", "/stream-long": b"3"}.get(path, b"2")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", length)]})
        if path == "/stream-long":
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"cd"})
        elif path in ("/long", "/short"):
            await send({"type": "http.response.body", "body": b"hello"})
        else:
            await send({"type": "http.response.body", "body": b"ok"})

    srv = start(app)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        # Nothing was sent yet: a clean 500.
        assert c.get("/long").status_code == 500
        assert c.get("/short").status_code == 500
        # The head and a piece already left: the client sees it cut short.
        with pytest.raises(httpx.HTTPError):
            c.get("/stream-long")
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/").text == "ok"
    assert "longer than its Content-Length" in caplog.text
    assert "shorter than its Content-Length" in caplog.text


def test_large_heads_and_bodies_sent_whole(start):
    """Heads and whole responses larger than the framing buffer (16 KiB)."""
    big = b"v" * 40000
    body = bytes(range(256)) * 1024

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"x-big", big)] if scope["path"] == "/head" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    srv = start(app)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for path in ("/head", "/body", "/head"):
            r = c.get(path)
            assert r.status_code == 200 and r.content == body
            assert r.headers.get("x-big", "") == (big.decode() if path == "/head" else "")
            assert r.headers["content-length"] == str(len(body))


def test_lifespan_startup_failure_stops_start():
    async def failed(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def crashed(scope, receive, send):
        await receive()
        raise RuntimeError("boom in startup")

    for app, reason in ((failed, "no database"), (crashed, "boom in startup")):
        with pytest.raises(RuntimeError, match="ASGI lifespan startup failed: .*" + reason):
            AsgiThread(app)


def test_app_without_lifespan_support_is_served(start):
    async def app(scope, receive, send):
        assert scope["type"] == "http"  # raises for "lifespan": not supported
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    srv = start(app)
    assert httpx.get(srv.url, timeout=10).text == "plain"


def test_serve_exits_with_a_clear_message_when_startup_crashes():
    res = run_python("-c",
                     "from cymongoose.asgi import serve\n"
                     "async def app(scope, receive, send):\n"
                     "    await receive()\n"
                     "    raise RuntimeError('cannot reach the database')\n"
                     "serve(app, url='http://127.0.0.1:0')\n")
    assert res.returncode == 3
    assert "ASGI lifespan startup failed: RuntimeError: cannot reach the database" in res.stderr
    assert not res.stdout  # it never listened


def test_manager_property_and_stop_without_start():
    server = ASGIServer(lambda scope, receive, send: None)
    with pytest.raises(RuntimeError, match="ASGIServer is not started"):
        server.manager
    asyncio.run(server.stop())
    with pytest.raises(ValueError):
        ASGIServer(lambda scope, receive, send: None, lifespan="sometimes")


# -- WebSocket with plain ASGI apps ------------------------------------------------------


async def ws_app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/reject":
        await send({"type": "websocket.close"})
        return
    sub = scope["subprotocols"][-1] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub,
                "headers": [(b"x-accepted", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            WS_LOG.append((message["code"], message.get("reason", "")))
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "see you"})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


WS_LOG: List[Any] = []


@needs_ws
def test_websocket_accept_echo_and_close_codes(start):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    WS_LOG.clear()
    srv = start(ws_app)
    with SyncClient(srv.ws_url + "/chat", subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.headers["x-accepted"] == "yes"
        ws.send("hi")
        assert ws.recv(10) == "HI"
        ws.send(b"\x00\x01\x02")
        assert ws.recv(10) == b"\x02\x01\x00"
        ws.send("x" * 300000)
        assert ws.recv(10) == "X" * 300000
        ws.close(4005, "done")
    wait_until(lambda: WS_LOG == [(4005, "done")])
    with SyncClient(srv.ws_url + "/chat") as ws:
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(10)
        assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "see you"
    with pytest.raises(InvalidStatus) as rejected:
        SyncClient(srv.ws_url + "/reject")
    assert rejected.value.response.status_code == 403
    wait_until(lambda: len(srv.server.manager.connections) == 1)


@needs_ws
def test_websocket_clients_get_1012_on_shutdown():
    from websockets.exceptions import ConnectionClosed

    WS_LOG.clear()
    srv = AsgiThread(ws_app)
    with SyncClient(srv.ws_url + "/chat") as ws:
        ws.send("ping")
        assert ws.recv(10) == "PING"
        srv.stop()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(10)
        assert info.value.rcvd.code == 1012
    assert WS_LOG == [(1012, "")]
