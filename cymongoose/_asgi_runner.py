"""One asyncio task per connection runs the ASGI application for each of
its requests in turn (``ConnRunner``), each in a context of its own
(``in_context``).

Why not a task per request, as uvicorn does: on PyPy an ``asyncio.Task``
is a Python object with ``__del__``, so every one of them, with what it
refers to, survives a minor collection and waits for its finalizer; at
tens of thousands of requests a second that made each minor collection
take ~30 ms, and so set the server's p99 and a seventh of its CPU.  A
kept-alive connection's requests come one after another anyway (the next
one is parsed once the response is complete), so one task serves them
all.  The application still runs inside a task (``asyncio.current_task()``,
timeouts and anyio's cancel scopes work), and each request gets a fresh
copy of the context, as with a task of its own.
"""

import asyncio
import contextvars
import platform
import types
from typing import Any, Awaitable, Callable, Coroutine, Dict, Generator, Optional

#: Whether the ASGI server runs a connection's requests on one task.  Only
#: on PyPy: CPython's tasks are C objects without a finalizer, and there a
#: task per request costs less (14.2 against 15.7 us per request for the
#: bench's raw ASGI app, bench/README.md).
PER_CONNECTION = platform.python_implementation() == "PyPy"

#: What serves the requests of a runner: called with the runner and its
#: first exchange, it runs the exchanges handed to it.
Serve = Callable[["ConnRunner", Any], Coroutine[Any, Any, None]]


class Wake:
    """A future-like object the runner's task awaits between requests,
    reused for each of them.  asyncio's tasks accept any object with
    ``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``,
    ``result`` and ``cancel``; unlike ``asyncio.Future`` this one has no
    ``__del__`` (see the module docstring) and is not made anew per request."""

    __slots__ = ("_loop", "_asyncio_future_blocking", "_callback", "_context", "_done",
                 "_cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._asyncio_future_blocking = False
        self._callback: Optional[Callable[[Any], Any]] = None
        self._context: Optional[contextvars.Context] = None
        self._done = False
        self._cancelled = False

    def __await__(self) -> Generator[Any, None, None]:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        self.result()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add_done_callback(self, fn: Callable[[Any], Any], *,
                          context: Optional[contextvars.Context] = None) -> None:
        if self._done:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._callback, self._context = fn, context

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> None:
        if self._cancelled:
            raise asyncio.CancelledError()

    def cancel(self, msg: Any = None) -> bool:
        if self._done:
            return False
        self._cancelled = True
        self._set()
        return True

    def set(self) -> None:
        """Wake the task awaiting this object (once per ``reset``)."""
        if not self._done:
            self._set()

    def _set(self) -> None:
        self._done = True
        fn = self._callback
        if fn is not None:
            self._callback = None
            self._loop.call_soon(fn, self, context=self._context)
            self._context = None

    def reset(self) -> None:
        self._done = self._cancelled = False


class ConnRunner:
    """The task running one connection's applications, one at a time."""

    __slots__ = ("task", "wake", "waiting", "next_ex", "retired")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.task: Optional["asyncio.Task[None]"] = None
        self.wake = Wake(loop)
        #: The task waits on ``wake`` for the connection's next request.
        self.waiting = False
        self.next_ex: Any = None
        #: No further request goes to this runner: it ends once the
        #: application it runs returns.
        self.retired = False

    def idle(self) -> None:
        """The task is about to await ``wake`` for the next request."""
        self.wake.reset()
        self.waiting = True

    def taken(self) -> Any:
        """After ``wake``: the exchange handed over, or None to end."""
        ex, self.next_ex = self.next_ex, None
        return ex

    def take(self, ex: Any) -> bool:
        """Hand ``ex`` to the waiting task; False when the task is busy (an
        application that answered already but still runs, for instance its
        background work) or gone."""
        if not self.waiting or self.retired:
            return False
        self.waiting = False
        self.next_ex = ex
        self.wake.set()
        return True

    def retire(self) -> None:
        """The connection closed, or its next request went to another
        runner: end once idle."""
        self.retired = True
        if self.waiting:
            self.waiting = False
            self.wake.set()


def spawn(runners: Dict[ConnRunner, None], current: Optional[ConnRunner], ex: Any,
          loop: asyncio.AbstractEventLoop, serve: Serve) -> ConnRunner:
    """Run ``ex`` on ``current`` when it waits for work, else on a new
    runner (returned; the caller keeps it as the connection's)."""
    if current is not None:
        if current.take(ex):
            return current
        current.retire()
    runner = ConnRunner(loop)
    runner.task = loop.create_task(serve(runner, ex))
    runners[runner] = None
    return runner


@types.coroutine
def in_context(coro: Awaitable[Any], ctx: contextvars.Context) -> Generator[Any, Any, Any]:
    """Await ``coro`` with every step of it run in ``ctx``: what a task of
    its own would give it.  What it waits on passes through to the task,
    and so do cancellation and other exceptions thrown in."""
    run = ctx.run
    send = coro.send  # type: ignore[attr-defined]
    throw = coro.throw  # type: ignore[attr-defined]
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            if error is None:
                out = run(send, value)
            else:
                out = run(throw, error)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            value = yield out
        except GeneratorExit:
            run(coro.close)  # type: ignore[attr-defined]
            raise
        except BaseException as exc:  # cancellation, or the task's own errors
            value = None
            error = exc
