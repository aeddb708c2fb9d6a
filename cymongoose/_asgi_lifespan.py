"""The ASGI ``lifespan`` scope: startup before serving, shutdown after.

The scope carries a ``state`` dict that the server shallow-copies into
every request scope.  In ``"auto"`` mode an application that raises before
reading the startup event, or returns without completing it, does not
support lifespan and is served anyway.
"""

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, MutableMapping, Optional

from .errors import LifespanError

log = logging.getLogger("cymongoose.asgi")

#: An ASGI 3.0 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[Any], Awaitable[None]]], Awaitable[None]]

_LIFESPAN_TIMEOUT = 5.0


class Lifespan:
    """Runs the application's ``lifespan`` scope."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, mode: str) -> None:
        self.app = app
        self.loop = loop
        self.mode = mode
        self.state: Dict[str, Any] = {}
        self.inbox: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.startup_done: "asyncio.Future[Optional[str]]" = loop.create_future()
        self.shutdown_done: "asyncio.Future[Optional[str]]" = loop.create_future()
        self.received = 0
        self.supported = True
        self.task: Optional["asyncio.Task[None]"] = None

    async def startup(self) -> None:
        """Run startup; raises ``LifespanError`` when the application fails it."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self.task = self.loop.create_task(self._main(scope))
        self.inbox.put_nowait({"type": "lifespan.startup"})
        outcome = await self.startup_done
        if outcome is not None:
            raise LifespanError("ASGI lifespan startup failed: %s" % outcome)

    async def _main(self, scope: Dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self.received == 0 and self.mode == "auto":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
                self.supported = False
            else:
                log.error("Exception in 'lifespan' protocol", exc_info=True)
                self._settle(self.startup_done, "%s: %s" % (type(exc).__name__, exc))
                self._settle(self.shutdown_done, "%s: %s" % (type(exc).__name__, exc))
        finally:
            if not self.startup_done.done():
                self.supported = False  # returned without completing startup
            self._settle(self.startup_done, None)
            self._settle(self.shutdown_done, None)

    @staticmethod
    def _settle(fut: "asyncio.Future[Optional[str]]", value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    async def _receive(self) -> Dict[str, Any]:
        message = await self.inbox.get()
        self.received += 1
        return message

    async def _send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._settle(self.startup_done, None)
        elif kind == "lifespan.startup.failed":
            self._settle(self.startup_done, message.get("message", "") or "(no message)")
        elif kind == "lifespan.shutdown.complete":
            self._settle(self.shutdown_done, None)
        elif kind == "lifespan.shutdown.failed":
            self._settle(self.shutdown_done, message.get("message", "") or "(no message)")
        else:
            raise RuntimeError("unexpected ASGI message %r in the lifespan scope" % (kind,))

    async def shutdown(self) -> None:
        """Run shutdown (at most ``_LIFESPAN_TIMEOUT`` seconds)."""
        task = self.task
        if task is None or not self.supported or task.done():
            return
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self.shutdown_done), _LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("ASGI lifespan shutdown did not complete in %.0fs", _LIFESPAN_TIMEOUT)
            outcome = None
        if outcome is not None:
            log.error("ASGI lifespan shutdown failed: %s", outcome)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
