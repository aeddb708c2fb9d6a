"""Drive a Manager from an asyncio loop, on the loop's own thread.

Mongoose's epoll descriptor goes to ``loop.add_reader``: when any of its
sockets is ready the loop calls ``Manager.poll(0)``, so handlers run on the
loop's thread and a request costs no thread hop and no wakeup.  Work that
no descriptor announces is polled for on purpose:

* ``call_soon``: what producers on the loop (an ASGI application's
  ``send``) hand to Mongoose runs at once, between polls, and asks for one
  poll, which sends the bytes; many responses share that poll.  (The ASGI
  server writes the whole response to a lone request itself:
  ``asgi._Core._sent``.)
* After each poll, a connection left to close or TLS bytes already
  buffered ask for another one at once (``cym_loop_pending``).
* A tick every ``TICK`` seconds (sooner for a Python timer due earlier)
  serves Mongoose's timers and timeouts.

A build of Mongoose without epoll (not Linux) has no descriptor to watch:
the loop then polls every ``FALLBACK_INTERVAL`` seconds.
"""

import asyncio
from typing import Any, Callable, Optional

from ._ffi import lib
from .manager import Manager

#: Seconds between polls when no descriptor calls for one.
TICK = 0.1
#: Seconds between polls in a build without epoll.
FALLBACK_INTERVAL = 0.002


class LoopPoller:
    """Polls ``mgr`` from ``loop`` until ``close()``; construct and use it on
    the loop's thread."""

    def __init__(self, mgr: Manager, loop: asyncio.AbstractEventLoop) -> None:
        self._mgr = mgr
        self._loop = loop
        self._scheduled = False
        self._closed = False
        #: Polls so far: the ASGI server counts the requests of each.
        self.polls = 0
        self._fd = lib.cym_loop_fd(mgr._mgr)
        self._interval = TICK if self._fd >= 0 else FALLBACK_INTERVAL
        if self._fd >= 0:
            loop.add_reader(self._fd, self.poll)
        self._tick_handle: Optional[asyncio.TimerHandle] = loop.call_later(
            self._interval, self._tick)

    def poll(self) -> None:
        """One poll: queued calls first, then Mongoose's I/O and handlers."""
        if self._closed:
            return
        self._scheduled = False
        self.polls += 1
        mgr = self._mgr
        if mgr._calls:
            # Calls queued by producers put bytes into send buffers: run them
            # before the I/O, which then writes those bytes in this poll.
            with mgr._calling_c:
                mgr._run_calls()
        mgr.poll(0)
        if mgr._calls or lib.cym_loop_pending(mgr._mgr):
            self.soon()

    def soon(self) -> None:
        """Ask for a poll in this loop iteration's wake (coalesced)."""
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self.poll)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as if in a poll, and ask for the poll that sends
        what it wrote.

        Loop thread only.  Between polls (an application's ``send``) the
        call runs at once, inside the Manager's C bracket; from a handler
        it is queued and runs at the end of the current poll.  Raises
        ``RuntimeError`` once the Manager is closed.
        """
        mgr = self._mgr
        if mgr._inside:
            mgr._queue_call(fn, *args)
        else:
            mgr._check_open()
            with mgr._calling_c:
                fn(*args)
        self.soon()

    def _tick(self) -> None:
        self._tick_handle = None
        if self._closed:
            return
        try:
            self.poll()
        finally:
            if not self._closed:
                delay = self._interval
                if self._mgr._timers is not None:
                    delay = min(delay, self._mgr._timer_wait(int(delay * 1000)) / 1000.0)
                self._tick_handle = self._loop.call_later(delay, self._tick)

    def close(self) -> None:
        """Stop polling (the Manager stays open)."""
        if self._closed:
            return
        self._closed = True
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
