"""One ASGI WebSocket session, from the upgrade request to the close.

The upgrade waits for the application: ``websocket.accept`` performs the
handshake in the next poll (with its subprotocol and headers),
``websocket.close`` before accepting rejects it with ``403``, and
``websocket.http.response.*`` sends any other response.
"""

import asyncio
import struct
from typing import Any, Dict, Optional

from ._asgi_exchange import AsgiExchange, AsgiResponse
from ._asgi_scope import build_ws_scope
from ._ffi import ffi
from ._http_exchange import CALL, WS, WS_CLOSE, ClientDisconnected
from ._http_server import HttpCore
from ._ws_handshake import accept_headers
from .connection import Connection
from .constants import WEBSOCKET_OP_BINARY, WEBSOCKET_OP_TEXT
from .messages import HttpMessage


class WsSession(AsgiExchange):
    """One WebSocket connection, from the upgrade request to the close."""

    __slots__ = ("key", "state", "close_code", "response")

    def __init__(self, server: HttpCore, conn: Connection, hm: HttpMessage, key: str,
                 loop: asyncio.AbstractEventLoop) -> None:
        scope = build_ws_scope(hm, conn.userdata, server._server_name, server._server_port, server.front)
        connection = hm.header("Connection")
        super().__init__(server, conn, scope,
                         connection.encode("utf-8", "surrogateescape") if connection is not None
                         else None, loop)
        self.key = key
        self.state = "connecting"  # then "accepted", "closed" (we sent CLOSE) or "denied"
        self.close_code: Optional[Any] = None
        self.response: Optional[AsgiResponse] = None
        self.deliver({"type": "websocket.connect"}, 0)
        self.body_done = True

    def on_disconnect(self) -> None:
        peer = self.conn.userdata
        code = peer.ws_close if peer is not None and peer.ws_close else None
        self._closed(code)

    def _closed(self, code: Any) -> None:
        if self.close_code is None:
            self.close_code = code or (1006, "")
        self._lost()

    async def receive(self) -> Dict[str, Any]:
        """ASGI ``receive``: connect, messages, then ``websocket.disconnect``."""
        message = await self._next()
        if message is None:
            code, reason = self.close_code or (1006, "")
            return {"type": "websocket.disconnect", "code": code, "reason": reason}
        return message

    async def send(self, message: Dict[str, Any]) -> None:
        """ASGI ``send`` for the ``websocket.*`` messages."""
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != "accepted":
                raise RuntimeError("websocket.send while the WebSocket is %s" % self.state)
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            text = message.get("text")
            if text is not None:
                await self._push(WS | WEBSOCKET_OP_TEXT, text.encode("utf-8"))
            else:
                await self._push(WS | WEBSOCKET_OP_BINARY, bytes(message.get("bytes") or b""))
        elif kind == "websocket.accept":
            if self.state != "connecting":
                raise RuntimeError("websocket.accept while the WebSocket is %s" % self.state)
            headers = accept_headers(message, self.scope["subprotocols"])
            self.state = "accepted"
            await self._push(CALL, lambda conn: self._accept(conn, headers))
        elif kind == "websocket.close":
            if self.state == "connecting":
                self.state = "denied"
                self.close_after = True
                self.response = AsgiResponse()
                self.response.start({"status": 403, "headers": [
                    (b"content-type", b"text/plain")]})
                pending = self.response.body(self, {"body": b""})
                if pending is not None:
                    await pending
            elif self.state == "accepted":
                self.state = "closed"
                code = int(message.get("code") or 1000)
                reason = message.get("reason") or ""
                if self.close_code is None:
                    self.close_code = (code, reason)
                payload = struct.pack("!H", code) + reason.encode("utf-8")
                if not self.disconnected:
                    await self._push(WS | WS_CLOSE, payload)
        elif kind in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.state == "connecting":
                self.state = "denied"
                self.close_after = True
                self.response = AsgiResponse()
            if self.state != "denied" or self.response is None:
                raise RuntimeError("%s after the WebSocket was accepted" % kind)
            if kind.endswith("start"):
                self.response.start(message)
            else:
                pending = self.response.body(self, message)
                if pending is not None:
                    await pending
        else:
            raise RuntimeError("unexpected ASGI message %r in a websocket scope" % (kind,))


    # -- Mongoose's side (during a poll) -------------------------------------------------------------

    def _accept(self, conn: Connection, headers: Dict[str, str]) -> None:
        """Complete the upgrade: ``ws_upgrade`` with a request holding the
        saved key (the real request's view died with its event)."""
        raw = self.key.encode("latin-1")
        hm = ffi.new("struct mg_http_message *")
        name = ffi.new("char[]", b"Sec-WebSocket-Key")
        value = ffi.new("char[]", raw)
        hm.headers[0].name.buf = name
        hm.headers[0].name.len = 17
        hm.headers[0].value.buf = value
        hm.headers[0].value.len = len(raw)
        view = HttpMessage._bind(int(ffi.cast("uintptr_t", hm)))
        try:
            conn.ws_upgrade(view, headers or None)
        finally:
            view._invalidate()

    def on_message(self, conn: Connection, msg: Any) -> None:
        """MG_EV_WS_MSG: deliver it; invalid UTF-8 in a text frame closes
        the session with 1007."""
        data = msg.data
        if msg.flags & 0x0F == WEBSOCKET_OP_BINARY:
            self.deliver({"type": "websocket.receive", "bytes": data}, len(data))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            conn.ws_send(struct.pack("!H", 1007), WS_CLOSE)
            conn.drain()
            return
        self.deliver({"type": "websocket.receive", "text": text}, len(data))

    def on_shutdown(self) -> None:
        """The server stops: tell the client it restarts (1012), as uvicorn does."""
        if self.conn.is_websocket:
            self.conn.ws_send(struct.pack("!H", 1012), WS_CLOSE)
            self.conn.drain()
            self._closed((1012, ""))
