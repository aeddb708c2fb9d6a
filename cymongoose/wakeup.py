"""Cross-thread wakeups: ``Manager.wakeup`` and ``wakeup_id`` (spec 3.8).

Deliberate difference from 0.2.5: a payload of any size arrives whole, or
the call raises.  0.2.5 passed each payload to Mongoose's ``mg_wakeup``,
which sends it as one datagram and silently drops it when it does not fit
the socket buffer (about 64 KB on Linux, 9 KB on macOS) or the buffer is
full.  Here the payloads wait in a FIFO in C and the socket only carries a
small doorbell that interrupts the poll (``_csrc/wakeup.c``).
"""

from typing import Any

from ._args import to_int
from ._ffi import ffi, lib
from ._hooks import LoopHooks
from .errors import MANAGER_FREED as _FREED, MongooseError

_ULONG_MAX = 2 ** (8 * ffi.sizeof("unsigned long")) - 1


class WakeupManagerMixin(LoopHooks):
    """``Manager.wakeup``, ``wakeup_id`` and the wakeup pipe's lifetime."""

    # No __slots__: Manager keeps a __dict__, where these attributes live.

    # The C queue (a cdata freed by ffi.gc once no thread can still be
    # using it), or None when wakeup is disabled.
    _wake: Any = None
    _wakeup_id = 0

    def _wakeup_init(self) -> None:
        w = lib.cym_wake_init(self._cm)  # type: ignore[attr-defined]
        if w == ffi.NULL:
            self.close()  # type: ignore[attr-defined]
            raise MongooseError("Failed to initialize wakeup support")
        self._wakeup_id = int(lib.cym_wake_pipe_id(w))
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
        self._check_open()  # type: ignore[attr-defined]
        w = self._wake  # a local reference keeps the C queue alive during the call
        if w is None or cid == 0:
            return False
        rc = lib.cym_wake_push(w, cid, data, len(data))
        if rc == lib.CYM_WAKE_OK:
            return True
        if rc == lib.CYM_WAKE_NOMEM:
            raise MemoryError("cannot queue a wakeup payload of %d bytes" % len(data))
        if rc == lib.CYM_WAKE_CLOSED:
            # Only close() closes the queue: it is under way on another thread.
            raise MongooseError(_FREED)
        raise MongooseError("wakeup failed: cannot signal the poll thread")

    def _before_free(self) -> None:
        w = self._wake
        if w is not None:
            lib.cym_wake_close(w)
        super()._before_free()
