"""``AsyncManager``: a Manager for asyncio programs.

By default the Manager runs in a daemon thread; the asyncio loop stays free
because the GIL is released during the C poll.  Methods called from the
asyncio side (``listen``, ``connect``, ``timer_add``, ...) are carried to
the poll thread with ``Manager.call_soon_threadsafe``, which interrupts the
poll, and wait for their result there.  Handlers and timer callbacks run on
the poll thread and hand results to asyncio with
:meth:`AsyncManager.schedule`.

With ``on_loop=True`` there is no thread: the asyncio loop itself polls the
Manager whenever one of its sockets is ready (``_loop_poller``, as the ASGI
server does), so handlers run on the loop's thread, may touch asyncio
objects directly, and must not block.  Each event then costs no thread
hand-off and no wakeup.
"""

import asyncio
import concurrent.futures
import threading
import time
import warnings
from typing import Any, Callable, Optional, cast

from .connection import Connection, Handler
from .errors import MongooseError
from .limits import Limits
from .manager import Manager
from ._loop_poller import LoopPoller
from .timers import Timer

_NOT_STARTED = "AsyncManager is not started"
#: Seconds between checks that the poll thread still runs while a call waits.
_CHECK_INTERVAL = 0.1


def _nothing() -> None:
    """Queued only to make a blocking poll return."""


class AsyncManager:
    """Run a :class:`Manager` next to an asyncio event loop.

    Use it as ``async with AsyncManager(handler) as am:``; entering starts
    the poll thread, leaving stops it and closes the Manager.  Wakeup is
    always enabled.  ``poll_interval`` is the poll timeout in milliseconds
    (at most 200 is used); ``shutdown_timeout`` bounds, in seconds, how long
    leaving waits for a poll thread stuck in a handler.  ``on_loop=True``
    polls from the asyncio loop instead of a thread (module docstring);
    ``poll_interval`` and ``shutdown_timeout`` then do not apply.
    """

    _MAX_POLL_MS = 200

    def __init__(self, handler: Optional[Handler] = None, poll_interval: int = 100,
                 error_handler: Optional[Callable[[BaseException], Any]] = None,
                 shutdown_timeout: float = 30, *, on_loop: bool = False) -> None:
        self._on_loop = bool(on_loop)
        self._poller: Optional[LoopPoller] = None
        self._loop_ident = 0  # the loop's thread, with on_loop
        self._handler = handler
        self._poll_interval = poll_interval
        self._error_handler = error_handler
        self._shutdown_timeout = shutdown_timeout
        self._manager: Optional[Manager] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> "AsyncManager":
        self._loop = asyncio.get_running_loop()
        self._manager = Manager(self._handler, enable_wakeup=True,
                                error_handler=self._error_handler)
        self._stop.clear()
        if self._on_loop:
            self._loop_ident = threading.get_ident()
            self._poller = LoopPoller(self._manager, self._loop)
            return self
        self._thread = threading.Thread(target=self._poll_loop, args=(self._manager,),
                                        name="cymongoose-poll", daemon=True)
        self._thread.start()
        return self

    def _poll_loop(self, manager: Manager) -> None:
        timeout = min(self._poll_interval, self._MAX_POLL_MS)
        while not self._stop.is_set():
            manager.poll(timeout)

    async def __aexit__(self, *exc: Any) -> None:
        """Stop the poll thread, then close the Manager; exceptions propagate.

        If the thread does not stop within ``shutdown_timeout`` (a handler
        blocks), a ``RuntimeWarning`` is emitted and the thread is abandoned
        with its Manager left open.
        """
        self._stop.set()
        poller = self._poller
        if poller is not None:
            poller.close()
            self._poller = None
            if self._manager is not None:
                self._manager.close()
            self._manager = None
            self._loop = None
            return
        self._wake()
        thread = self._thread
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        while thread is not None and thread.is_alive():
            elapsed = time.monotonic() - start
            remaining = self._shutdown_timeout - elapsed
            if remaining <= 0:
                warnings.warn(
                    "AsyncManager poll thread did not stop within %ss; abandoning thread. "
                    "A handler is likely blocked." % (self._shutdown_timeout,),
                    RuntimeWarning, stacklevel=2)
                break
            await loop.run_in_executor(None, thread.join, min(5.0, remaining))
            elapsed = time.monotonic() - start
            if thread.is_alive() and elapsed < self._shutdown_timeout:
                warnings.warn(
                    "AsyncManager poll thread has not stopped after %.0fs; a handler may be "
                    "blocking. Retrying shutdown..." % (elapsed,),
                    RuntimeWarning, stacklevel=2)
                self._wake()
        if thread is None or not thread.is_alive():
            if self._manager is not None:
                self._manager.close()
            self._thread = None
            self._manager = None
        self._loop = None

    # -- state ---------------------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The Manager; raises ``RuntimeError`` when not started.

        ``AsyncManager``'s own methods carry their call to the poll thread:
        use the Manager directly from handlers, or under the threading
        rules of ``Manager``.
        """
        if self._manager is None:
            raise MongooseError(_NOT_STARTED)
        return self._manager

    @property
    def running(self) -> bool:
        """True while the poll thread runs and no stop was requested."""
        if self._poller is not None:
            return not self._stop.is_set()
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def _wake(self) -> None:
        """Interrupt a blocking poll; best effort."""
        manager = self._manager
        if manager is None:
            return
        try:
            manager.call_soon_threadsafe(_nothing)
        except Exception:  # closed: nothing is polling
            pass

    def _on_poll_thread(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a Manager method on the poll thread and return its result.

        From a handler (the poll thread) it is called at once; while no
        thread polls, on the calling thread.
        """
        manager = self.manager
        thread = self._thread
        call = getattr(manager, method)
        if self._poller is not None:
            # The loop's thread polls: from it, call at once (between
            # polls); from another thread, carry the call as below.
            if self._loop_ident == threading.get_ident():
                result = call(*args, **kwargs)
                self._poller.soon()
                return result
        elif thread is None or thread is threading.current_thread() or not thread.is_alive():
            return call(*args, **kwargs)
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        manager.call_soon_threadsafe(run)
        while True:
            try:
                return future.result(_CHECK_INTERVAL)
            except concurrent.futures.TimeoutError:
                # Polling ended (stop requested) before running it.
                polling = self._poller is not None or (thread is not None and thread.is_alive())
                if not polling and future.cancel():
                    return call(*args, **kwargs)

    # -- delegated methods ---------------------------------------------------

    def listen(self, url: str, handler: Optional[Handler] = None, *,
               http: Optional[bool] = None, limits: Optional[Limits] = None) -> Connection:
        """``Manager.listen`` on the poll thread; raises ``RuntimeError`` when not started."""
        return cast(Connection, self._on_poll_thread("listen", url, handler, http=http, limits=limits))

    def connect(self, url: str, handler: Optional[Handler] = None, *,
                http: Optional[bool] = None) -> Connection:
        """``Manager.connect`` on the poll thread; raises ``RuntimeError`` when not started."""
        return cast(Connection, self._on_poll_thread("connect", url, handler, http=http))

    def mqtt_connect(self, url: str, **kwargs: Any) -> Connection:
        """``Manager.mqtt_connect`` on the poll thread, every option as a keyword."""
        return cast(Connection, self._on_poll_thread("mqtt_connect", url, **kwargs))

    def mqtt_listen(self, url: str, handler: Optional[Handler] = None) -> Connection:
        """``Manager.mqtt_listen`` on the poll thread; raises ``RuntimeError`` when not started."""
        return cast(Connection, self._on_poll_thread("mqtt_listen", url, handler))

    def sntp_connect(self, url: str, handler: Optional[Handler] = None) -> Connection:
        """``Manager.sntp_connect`` on the poll thread; raises ``RuntimeError`` when not started."""
        return cast(Connection, self._on_poll_thread("sntp_connect", url, handler))

    def timer_add(self, ms: int, callback: Callable[[], Any], *, repeat: bool = False,
                  run_now: bool = False) -> Timer:
        """``Manager.timer_add`` on the poll thread; raises ``RuntimeError`` when not started."""
        return cast(Timer, self._on_poll_thread("timer_add", ms, callback, repeat=repeat, run_now=run_now))

    def wakeup(self, connection_id: int, data: bytes = b"") -> bool:
        """``Manager.wakeup`` (thread-safe, called directly); ``RuntimeError`` when not started."""
        return self.manager.wakeup(connection_id, data)

    def schedule(self, coro_or_callback: Any) -> None:
        """Run a coroutine or a zero-argument callable on the asyncio loop.

        Meant for handlers on the poll thread.  A coroutine is submitted with
        ``run_coroutine_threadsafe`` (its future is discarded), anything else
        is called with ``call_soon_threadsafe``.  Raises ``RuntimeError``
        when not started.
        """
        loop = self._loop
        if loop is None:
            raise MongooseError(_NOT_STARTED)
        if asyncio.iscoroutine(coro_or_callback):
            asyncio.run_coroutine_threadsafe(coro_or_callback, loop)
        else:
            loop.call_soon_threadsafe(coro_or_callback)
