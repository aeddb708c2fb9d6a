"""Timers on the event loop: ``Manager.timer_add`` and ``Timer``.

Mongoose keeps the timers; each calls the one timer dispatcher
(``_cym_timer``) with its Manager's slot and the ``Timer``'s id, the same
lookup events use.  The Manager's registry (id -> ``Timer``) keeps every
live ``Timer`` alive, so a timer keeps firing after the caller drops it.
``cancel()`` may come from any thread: it only flags the timer and queues
it, and the next ``poll()`` unlinks it from Mongoose on the poll thread,
where Mongoose's timer list lives.
"""

import threading
from typing import Any, Callable, Dict, List, Optional

from ._args import to_int
from . import _dispatch
from ._dispatch import _on_escape
from ._ffi import ffi, lib
from ._host import ManagerHost
from .errors import MongooseError

_U64_MAX = 2**64 - 1


class Timer:
    """A callback Mongoose runs on the poll thread, once or periodically.

    Made by :meth:`Manager.timer_add`; ``Timer()`` itself is inert
    (``active`` is False, ``cancel()`` does nothing).
    """

    __slots__ = ("_c", "_mgr", "_callback", "_repeat", "_cancelled", "_id",
                 "__weakref__")

    def __init__(self) -> None:
        self._c: Any = None  # the struct mg_timer, while Mongoose has it
        self._mgr: Any = None
        self._callback: Optional[Callable[[], Any]] = None
        self._repeat = False
        self._cancelled = False
        self._id = 0  # key in the Manager's registry, and C's name for the timer

    @property
    def active(self) -> bool:
        """True while the timer is registered and not cancelled."""
        return self._c is not None and not self._cancelled

    def cancel(self) -> None:
        """Stop the timer; safe from any thread, idempotent.

        ``active`` turns False at once and the callback never runs again
        (one already running on the poll thread finishes).  Mongoose lets go
        of the timer at the start of the next ``poll()``.
        """
        mgr = self._mgr
        if mgr is None or self._cancelled:
            return
        with mgr._timer_lock:
            if self._cancelled or self._mgr is None or self._c is None:
                return
            self._cancelled = True
            mgr._timer_cancels.append(self)

    def _fire(self) -> None:
        """Mongoose calls the timer (poll thread, inside ``mg_mgr_poll``)."""
        mgr = self._mgr
        if mgr is None:
            return
        callback = self._callback
        if not self._repeat:
            # Mongoose frees a one-shot timer as soon as this call returns.
            self._c = None
            self._release(mgr)
        if self._cancelled:
            return
        try:
            callback()  # type: ignore[misc]
        except Exception as exc:
            mgr._report(exc)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: poll() re-raises
            mgr._defer(exc)

    def _release(self, mgr: Any) -> None:
        """Forget the timer: no C struct any more, nothing to keep alive."""
        mgr._timers.pop(self._id, None)
        self._mgr = None
        self._callback = None

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle 'Timer' object")


@ffi.def_extern(onerror=_on_escape)
def _cym_timer(slot: int, tid: int) -> None:
    timer = _dispatch._MANAGERS[slot]._timers.get(tid)
    if timer is not None:
        timer._fire()


class TimerManagerMixin(ManagerHost):
    """``Manager.timer_add`` and the timer bookkeeping of ``poll``/``close``."""

    # No __slots__: Manager keeps a __dict__, where these attributes live.

    # Created by the first timer_add, so Managers without timers pay nothing.
    _timers: Optional[Dict[int, Timer]] = None
    _timer_next = 1  # the next id to try (ids fit 32 bits, 0 is never used)
    _timer_cancels: Optional[List[Timer]] = None
    _timer_lock: Any = None

    def timer_add(self, milliseconds: int, callback: Callable[[], Any], *,
                  repeat: bool = False, run_now: bool = False) -> Timer:
        """Call ``callback()`` on the poll thread after ``milliseconds``.

        The first expiry counts from the next ``poll()``; ``repeat`` fires
        every ``milliseconds`` until cancelled; ``run_now`` also fires on the
        next poll (a one-shot ``run_now`` timer fires exactly once).  A poll
        waits for I/O no longer than the next timer needs, so timers fire on
        time whatever ``poll``'s timeout; a repeating 0 ms timer runs once
        per poll.  A callback's ``Exception`` goes to the Manager's
        ``error_handler``, or its traceback is printed, and the timer keeps
        running;
        ``KeyboardInterrupt``/``SystemExit`` is re-raised by ``poll()``.
        Call it from the poll thread or while nobody polls.

        Raises ``RuntimeError("Manager has been freed")`` after ``close()``,
        ``OverflowError`` for a negative or too large ``milliseconds``,
        ``RuntimeError("Failed to add timer")`` when Mongoose cannot.
        """
        ms = to_int(milliseconds, "milliseconds", 0, _U64_MAX)
        self._check_open()
        self._check_thread()
        timers = self._timers
        if timers is None:
            self._timer_lock = threading.Lock()
            self._timer_cancels = []
            timers = self._timers = {}
        tid = self._timer_next
        while tid in timers:  # only after 2**32 timers: skip ids still in use
            tid = tid % 0xFFFFFFFF + 1
        self._timer_next = tid % 0xFFFFFFFF + 1
        timer = Timer()
        timer._id = tid
        cm = self._cm
        c = lib.cym_timer_add(cm, ms, bool(repeat), bool(run_now), tid)
        if c == ffi.NULL:
            raise MongooseError("Failed to add timer")
        timer._c = c
        timer._mgr = self
        timer._callback = callback
        timer._repeat = bool(repeat)
        timers[tid] = timer
        return timer

    def _timer_wait(self, timeout_ms: int) -> int:
        """Start of a poll once timers exist: unlink cancelled ones; return the I/O wait."""
        if self._timer_cancels:
            self._drain_cancels()
        if self._timers:
            timeout_ms = lib.cym_timer_wait(self._cm, timeout_ms)
        return timeout_ms

    def _drain_cancels(self) -> None:
        """Unlink cancelled timers from Mongoose (poll thread, outside mg_mgr_poll)."""
        with self._timer_lock:
            cancels, self._timer_cancels = self._timer_cancels, []
        for timer in cancels:  # type: ignore[union-attr]
            c = timer._c
            if c is not None:  # None: a one-shot that fired and was freed meanwhile
                timer._c = None
                lib.cym_timer_free(self._cm, c)
                timer._release(self)

    def _before_free(self) -> None:
        # Mongoose frees the timers themselves in mg_mgr_free, before any
        # further poll: none fires again, so the Timers can go.
        if self._timers is not None:
            with self._timer_lock:
                for timer in list(self._timers.values()):
                    timer._c = None
                    timer._release(self)
                self._timers.clear()
                self._timer_cancels = []
        super()._before_free()
