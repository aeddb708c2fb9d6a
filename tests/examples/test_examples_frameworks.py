"""The WSGI (Flask) and ASGI (FastAPI) examples, run as subprocesses, driven by httpx."""

import os

import httpx
import pytest
import websocket

from support.subprocs import EXAMPLES

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="needs the source tree's examples/")

LISTEN = ("--listen", "http://127.0.0.1:0")


def _fastapi_missing():
    try:
        import fastapi  # noqa: F401
    except ImportError:
        return True
    return False


def test_wsgi_flask(start_example):
    pytest.importorskip("flask")
    _, port = start_example("wsgi_flask.py", "--workers", "2", *LISTEN)
    with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10) as client:
        assert client.get("/").text == "Hello from Flask on cymongoose\n"
        created = client.post("/api/items", json={"name": "pen"})
        assert created.status_code == 201 and created.json() == {"id": 1, "name": "pen"}
        client.post("/api/items", json={"name": "ink"})
        assert client.get("/api/items").json() == [{"id": 1, "name": "pen"},
                                                   {"id": 2, "name": "ink"}]
        assert client.post("/api/items", content=b"{").status_code == 400
        streamed = client.get("/stream", params={"n": 5})
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.text == "".join("line %d\n" % i for i in range(5))
        assert client.get("/missing").status_code == 404


@pytest.mark.skipif(_fastapi_missing(),
                    reason="FastAPI is not installed (pip install cymongoose[frameworks] or "
                           "[frameworks-pypy])")
def test_asgi_fastapi(start_example):
    _, port = start_example("asgi_fastapi.py", *LISTEN)
    with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10) as client:
        assert client.get("/").json() == {"hello": "FastAPI on cymongoose"}
        assert client.get("/items/7", params={"q": "x"}).json() == {"item_id": 7, "q": "x"}
        assert client.get("/items/seven").status_code == 422
        r = client.post("/items", json={"name": "pen", "price": 2.5})
        assert r.json() == {"name": "pen", "price_with_tax": 3.0}
        assert client.post("/items", json={"name": "pen"}).status_code == 422
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % port, timeout=10)
    try:
        ws.send("hi")
        assert ws.recv() == "echo: hi"
    finally:
        ws.close()
