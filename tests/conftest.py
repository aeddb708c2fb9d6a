"""Shared fixtures: a Manager polled by a background thread, free ports, waits."""

import os
import threading
import time
from typing import Any, Callable, Optional

import pytest

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
          **mgr_kwargs: Any):
    """Start a Manager with one listener, polled on a thread: (loop, port)."""
    mgr = cm.Manager(handler, **mgr_kwargs)
    listener = mgr.listen(url)
    loop = LoopThread(mgr).start()
    return loop, listener.local_addr[1]


@pytest.fixture
def server_factory():
    """Start servers with ``server_factory(handler, url=...)``; all stop at teardown."""
    loops = []

    def start(handler: Optional[Callable[..., Any]] = None, url: str = "http://127.0.0.1:0",
              **mgr_kwargs: Any):
        loop, port = serve(handler, url, **mgr_kwargs)
        loops.append(loop)
        return loop, port

    yield start
    for loop in loops:
        loop.stop()
        loop.mgr.close()
