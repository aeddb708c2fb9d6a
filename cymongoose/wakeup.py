"""The way onto the poll thread: ``Manager.wakeup``, ``wakeup_id`` and
``call_soon_threadsafe``.

A payload of any size arrives whole, or the call raises: payloads wait in a
FIFO in C and the wakeup socket only carries a small doorbell that
interrupts the poll (``_csrc/wakeup.c``).  Python callables queued by
``call_soon_threadsafe`` wait in a deque beside it and ring the same
doorbell.
"""

from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from ._args import to_int
from ._ffi import ffi, lib
from ._host import ManagerHost
from .errors import MANAGER_FREED as _FREED, MongooseError, check

_ULONG_MAX = 2 ** (8 * ffi.sizeof("unsigned long")) - 1
_E_NOMEM = int(lib.CYM_E_NOMEM)
_E_SIGNAL = int(lib.CYM_E_SIGNAL)
_NO_SIGNAL = "wakeup failed: cannot signal the poll thread"


class WakeupManagerMixin(ManagerHost):
    """``Manager.wakeup``, ``wakeup_id`` and the wakeup pipe's lifetime."""

    # No __slots__: Manager keeps a __dict__, where these attributes live.

    # The C queue (a cdata freed by ffi.gc once no thread can still be
    # using it); None only while the Manager is being made.
    _wake: Any = None
    _wakeup_id = 0  # the pipe's id when enable_wakeup=True, else 0
    _doorbell_id = 0  # the pipe's id, which only interrupts the poll
    # Callables queued by call_soon_threadsafe; the deque's append and
    # popleft are atomic, so producers need no lock of their own.
    _calls: Optional[Deque[Tuple[Callable[..., Any], Tuple[Any, ...]]]] = None

    def _wakeup_init(self, public: bool) -> None:
        # Without enable_wakeup the pipe still carries call_soon_threadsafe,
        # hidden: it takes no connection id, and wakeup() stays disabled.
        w = lib.cym_wake_init(self._cm, 0 if public else 1)
        if w == ffi.NULL:
            self.close()
            raise MongooseError("Failed to initialize wakeup support")
        self._doorbell_id = int(lib.cym_wake_pipe_id(w))
        self._wakeup_id = self._doorbell_id if public else 0
        self._calls = deque()
        self._wake = ffi.gc(w, lib.cym_wake_free)

    @property
    def wakeup_id(self) -> int:
        """Id of the internal wakeup pipe, or 0 when wakeup is disabled.

        ``wakeup(wakeup_id)`` interrupts a blocking ``poll()`` without any
        user event.  The id stays readable after ``close()``.
        """
        return self._wakeup_id

    def wakeup(self, connection_id: int, data: bytes = b"") -> bool:
        """Deliver ``data`` to connection ``connection_id`` as ``MG_EV_WAKEUP``.

        Safe from any thread, also while another thread blocks in
        ``poll()``, which it interrupts.  During a later poll, on the poll
        thread, the connection with that id receives ``MG_EV_WAKEUP`` with
        ``data`` (``bytes``).  Payloads arrive whole whatever their size, in
        the order they were sent; one for an id that does not exist (any
        more) is dropped.  Payloads not yet delivered when the Manager
        closes are discarded.

        Returns False when wakeup is disabled or ``connection_id`` is 0,
        otherwise True.  Raises ``TypeError`` unless ``data`` is ``bytes``,
        ``OverflowError`` for an id outside C ``unsigned long``,
        ``RuntimeError("Manager has been freed")`` after ``close()``,
        ``MemoryError`` when the payload cannot be copied and
        ``RuntimeError`` when the poll thread cannot be signalled.
        """
        cid = to_int(connection_id, "connection_id", 0, _ULONG_MAX)
        if not isinstance(data, bytes):
            raise TypeError("Argument 'data' has incorrect type (expected bytes, got %s)"
                            % type(data).__name__)
        self._check_open()
        w = self._wake  # a local reference keeps the C queue alive during the call
        if w is None or cid == 0 or not self._wakeup_id:
            return False
        rc = lib.cym_wake_push(w, cid, data, len(data))
        if rc:
            # CYM_E_CLOSED: only close() closes the queue, and it is under
            # way on another thread.
            check(rc, {_E_NOMEM: "cannot queue a wakeup payload of %d bytes" % len(data),
                       _E_SIGNAL: _NO_SIGNAL})
        return True

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the poll thread, during the next ``poll()``.

        Safe from any thread, the poll thread included (the call is queued
        there too, never run inline).  Calls run in the order they were
        queued, after the poll's I/O events, and the poll waiting at the
        time returns at once.  They run like handlers: an exception goes to
        the Manager's ``error_handler`` (without one, its traceback is
        printed), and a ``KeyboardInterrupt`` or ``SystemExit`` is re-raised
        by ``poll()``.  Calls not yet run when the Manager closes are
        dropped.

        Works whether or not the Manager was made with ``enable_wakeup``.
        Raises ``RuntimeError("Manager has been freed")`` after ``close()``
        and ``RuntimeError`` when the poll thread cannot be signalled (the
        call stays queued for a later poll).
        """
        self._check_open()
        calls = self._calls
        w = self._wake  # a local reference keeps the C queue alive during the call
        if calls is None or w is None:
            raise MongooseError(_FREED)
        calls.append((fn, args))
        rc = lib.cym_wake_push(w, self._doorbell_id, ffi.NULL, 0)  # the doorbell only
        if rc:
            check(rc, {_E_SIGNAL: _NO_SIGNAL})

    def _queue_call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` like ``call_soon_threadsafe`` but without the
        doorbell: for callers on the poll thread that make sure a poll
        follows (``_loop_poller``)."""
        calls = self._calls
        if calls is None:
            raise MongooseError(_FREED)
        calls.append((fn, args))

    def _run_calls(self) -> None:
        """Run the queued calls (poll thread, inside ``poll()``'s C bracket)."""
        calls = self._calls
        if calls:
            # Only what is queued now: a call that queues another leaves it
            # for the next poll (which the doorbell makes return at once).
            for _ in range(len(calls)):
                fn, args = calls.popleft()
                try:
                    fn(*args)
                except Exception as exc:
                    self._report(exc)
                except BaseException as exc:  # re-raised when poll() returns
                    self._defer(exc)

    def _before_free(self) -> None:
        w = self._wake
        if w is not None:
            lib.cym_wake_close(w)
        if self._calls is not None:
            self._calls.clear()
        super()._before_free()
