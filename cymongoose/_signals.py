"""Serve until SIGINT or SIGTERM: the one place that installs stop signals.

``Manager.run`` (and the servers built on it) loop through
:func:`serve_until_signal`.  Inside it SIGINT and SIGTERM only record the
signal and set the stop flag, so the loop ends between two iterations; on
the way out the previous handlers are restored, however the loop ended.
"""

import signal
import threading
from typing import Any, Callable, List, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """A stop flag that SIGINT and SIGTERM set while it is entered.

    ``received`` lists the signals caught so far, in order; ``stopped`` is
    True once a signal arrived or ``set()`` asked for a stop from any
    thread.  Entering installs the handlers: on the main
    thread always; elsewhere ``signal.signal`` raises ``ValueError`` before
    anything changes, unless ``required`` is False, in which case nothing is
    installed and only ``set()`` stops.  Leaving restores what was there.
    """

    def __init__(self, required: bool = True) -> None:
        self.received: List[int] = []
        # A plain attribute, which the serving loop reads once per poll
        # without a call (nothing waits on the flag, so it needs no Event).
        self.stopped = False
        self._required = required
        self._saved: List[Any] = []

    def set(self) -> None:
        """Request a stop; thread-safe (one attribute store)."""
        self.stopped = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        self.stopped = True

    def __enter__(self) -> "SignalStop":
        if not self._required and threading.current_thread() is not threading.main_thread():
            return self
        try:
            for sig in STOP_SIGNALS:
                self._saved.append((sig, signal.signal(sig, self._on_signal)))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        while self._saved:
            sig, old = self._saved.pop()
            signal.signal(sig, old)


def serve_until_signal(step: Callable[[], Any], *,
                       finish: Optional[Callable[[SignalStop], Any]] = None,
                       cleanup: Optional[Callable[[], Any]] = None,
                       stop: Optional[SignalStop] = None) -> SignalStop:
    """Call ``step()`` until SIGINT, SIGTERM or ``stop.set()``; return the stop flag.

    ``finish(stop)`` runs after the loop with the handlers still installed
    (a second signal lands in ``stop.received``).  ``cleanup()`` runs last,
    after the previous handlers are restored, even when ``step`` raised;
    it does not run when the handlers could not be installed (``ValueError``
    off the main thread for a required stop), so nothing changed.
    """
    if stop is None:
        stop = SignalStop()
    stop.__enter__()
    try:
        while not stop.stopped:
            step()
        if finish is not None:
            finish(stop)
    finally:
        try:
            stop.__exit__(None, None, None)
        finally:
            if cleanup is not None:
                cleanup()
    return stop
