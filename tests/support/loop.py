"""A Manager polled on a background thread, polling on this thread, bounded waits."""

import os
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

import cymongoose as cm

# `make test-asan` preloads libasan: there RSS measures ASan's quarantine and
# shadow memory, not ours, so memory-growth assertions are skipped.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1fs" % timeout)
        time.sleep(interval)


class LoopThread:
    """Polls a Manager on a background thread; calls run on that thread via ``call``."""

    def __init__(self, mgr: cm.Manager, poll_ms: int = 10) -> None:
        self.mgr = mgr
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._calls: list = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.mgr.poll(self.poll_ms)
            with self._lock:
                calls, self._calls = self._calls, []
            for fn, box, done in calls:
                try:
                    box.append((True, fn()))
                except BaseException as exc:  # handed back to the caller
                    box.append((False, exc))
                done.set()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the poll thread between polls and return its result."""
        box: list = []
        done = threading.Event()
        with self._lock:
            self._calls.append((fn, box, done))
        if not done.wait(timeout):
            raise AssertionError("poll thread did not run the call in time")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def start(self) -> "LoopThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "poll thread did not stop"


def serve(handler: Optional[Callable[..., Any]] = None, url: str = "http://127.0.0.1:0",
          limits: Optional[cm.Limits] = None, **mgr_kwargs: Any):
    """Start a Manager with one listener (with ``limits``), polled on a thread: (loop, port)."""
    mgr = cm.Manager(handler, **mgr_kwargs)
    listener = mgr.listen(url, limits=limits)
    loop = LoopThread(mgr).start()
    return loop, listener.local_addr[1]


def poll_until(mgr: cm.Manager, predicate: Callable[[], Any], timeout: float = 10.0,
               poll_ms: int = 10) -> Any:
    """Poll ``mgr`` on this thread until ``predicate()`` is truthy, bounded."""
    return wait_until(lambda: predicate() or mgr.poll(poll_ms), timeout, interval=0)


class InThread:
    """Run ``fn`` on a thread; ``result()`` returns its value or raises its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._box: List[Tuple[bool, Any]] = []
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._box.append((True, fn()))
        except BaseException as exc:  # handed back to result()
            self._box.append((False, exc))

    @property
    def done(self) -> bool:
        return bool(self._box)

    def result(self, timeout: float = 10.0) -> Any:
        self.thread.join(timeout)
        assert self._box, "thread did not finish within %.1fs" % timeout
        ok, value = self._box[0]
        if not ok:
            raise value
        return value


def run_while_polling(mgr: cm.Manager, fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run a blocking client ``fn`` on a thread while this thread polls ``mgr``."""
    job = InThread(fn)
    poll_until(mgr, lambda: job.done, timeout)
    return job.result()
