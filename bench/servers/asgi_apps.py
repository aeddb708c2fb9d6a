"""The ASGI apps of the bench's server comparison.

``raw`` answers ``ok`` (text/plain); ``fastapi`` is the same from a
one-route FastAPI app with an ``async def`` endpoint, as FastAPI's tutorial
writes it, and ``fastapi_sync`` with a plain ``def`` one (both imported only
when asked for); ``ws_echo`` accepts every WebSocket and sends each message
back.
"""

from typing import Any

HEAD = {"type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}


async def raw(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    await send(HEAD)
    await send(BODY)


async def ws_echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return await raw(scope, receive, send)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
        else:
            await send({"type": "websocket.send", "text": msg["text"]})


def __getattr__(name: str) -> Any:
    if name in ("fastapi", "fastapi_sync"):
        import fastapi
        from fastapi.responses import PlainTextResponse

        app = fastapi.FastAPI()
        if name == "fastapi":
            # As FastAPI's tutorial writes its first endpoint.
            @app.get("/", response_class=PlainTextResponse)
            async def index() -> str:
                return "ok"
        else:
            # A plain function runs in anyio's thread pool: a thread hop per
            # request, the same in every server.
            @app.get("/", response_class=PlainTextResponse)
            def index_sync() -> str:
                return "ok"

        globals()[name] = app
        return app
    raise AttributeError(name)
