"""ASGI: a FastAPI application (HTTP and WebSocket) served by cymongoose.

    pip install fastapi
    python examples/asgi_fastapi.py --listen http://127.0.0.1:8000
    curl http://127.0.0.1:8000/items/7?q=x

Mongoose runs the network on its own thread; the application's coroutines
run on the asyncio loop that serve() starts.
"""

import argparse
from typing import Any, Dict, Optional

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from cymongoose.asgi import serve

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.get("/")
async def index() -> Dict[str, str]:
    return {"hello": "FastAPI on cymongoose"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None) -> Dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> Dict[str, Any]:
    # FastAPI validates the body against Item: bad input gets a 422.
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@app.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text("echo: " + await ws.receive_text())
    except WebSocketDisconnect:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="ASGI (FastAPI) example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    serve(app, args.listen)  # prints the address; Ctrl-C stops


if __name__ == "__main__":
    main()
