"""Calls from other threads, carried to the poll thread.

Mongoose is single-threaded.  A ``Connection`` method that queues output or
changes state (``send``, ``reply``, ``ws_send``, ``mqtt_pub``, ``close``,
...), called from a thread other than the one that polls its Manager, does
not touch C there: it is queued with ``Manager.call_soon_threadsafe``, so
it runs on the poll thread, in call order, and the poll wakes at once.

- Methods that return nothing return at once.  If the carried call raises,
  the exception goes to the Manager's ``error_handler`` (without one, its
  traceback is printed), like an exception in a handler.
- Methods that return a value (``mqtt_pub``'s packet id,
  ``recv_consume``'s count) wait for the poll thread's answer, at most
  ``ANSWER_TIMEOUT`` seconds, and raise what the call raised there, or
  ``ThreadError`` when no answer came in time.

"The poll thread" is the thread that last entered ``poll()``, while it is
alive; before any poll, or once it has ended, calls run directly.  Arguments
that the caller could change afterwards (``bytearray``, ``memoryview``) are
copied when the call is queued.
"""

import functools
import threading
from threading import get_ident as _get_ident
from typing import Any, Callable, Dict, List, Tuple, TypeVar, cast

from .errors import ThreadError

F = TypeVar("F", bound=Callable[..., Any])

ANSWER_TIMEOUT = 10.0


def elsewhere(mgr: Any) -> bool:
    """True when a thread other than the caller's polls ``mgr``."""
    loop = mgr._loop_thread
    if not loop or loop == _get_ident():
        return False
    if mgr._poller:
        return True  # inside poll() right now
    return any(t.ident == loop for t in threading.enumerate())


def _frozen(args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    return tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)


def carried(method: F) -> F:
    """Run ``method`` on the poll thread when called from another thread."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        mgr = self._mgr
        if self._c is None or mgr is None or not elsewhere(mgr):
            return method(self, *args, **kwargs)
        mgr.call_soon_threadsafe(_run, method, self, _frozen(args), kwargs)
        return None

    return cast(F, wrapper)


def carried_with_answer(method: F) -> F:
    """Like ``carried``, for a method whose result the caller needs."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        mgr = self._mgr
        if self._c is None or mgr is None or not elsewhere(mgr):
            return method(self, *args, **kwargs)
        answer = _Answer()
        mgr.call_soon_threadsafe(answer.run, method, self, _frozen(args), kwargs)
        return answer.wait(getattr(method, "__name__", "call"))

    return cast(F, wrapper)


def _run(method: Callable[..., Any], obj: Any, args: Tuple[Any, ...],
         kwargs: Dict[str, Any]) -> None:
    method(obj, *args, **kwargs)


class _Answer:
    """The result of a carried call, handed back to the thread waiting for it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._box: List[Any] = []

    def run(self, method: Callable[..., Any], obj: Any, args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> None:
        try:
            self._box.append((True, method(obj, *args, **kwargs)))
        except Exception as exc:  # raised again on the waiting thread
            self._box.append((False, exc))
        finally:
            self._done.set()

    def wait(self, name: str) -> Any:
        if not self._done.wait(ANSWER_TIMEOUT):
            raise ThreadError("%s() from another thread: the poll thread did not answer "
                              "within %.0f s" % (name, ANSWER_TIMEOUT))
        ok, value = self._box[0]
        if not ok:
            raise value
        return value
