"""ASGI WebSocket echo application for the Autobahn cases (``run.py --asgi``):
every message goes back as received, text as text and binary as binary.

Served by ``python -m cymongoose asgi asgi_echo:app``; the ASGI server has
no permessage-deflate and Mongoose's default message size limit, so
``run.py --asgi`` leaves out chapters 9, 12 and 13.
"""

from typing import Any, Callable


async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
