"""Logging to stderr for the command line and the blocking ``serve()``
functions: records go out from a thread of their own.

A server must not stop serving because nobody reads its stderr (a full pipe
blocks every write to it).  The serving threads only put records on a
bounded queue, never waiting; a daemon thread writes them out.  When the
queue is full, records are dropped and counted, and the writer says how
many before the next line it writes.
"""

import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from typing import Any, Optional

from ._thread_policy import run_as_helper

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUEUE_SIZE = 10000
_FLUSH_AT_EXIT = 2.0  # seconds the writer gets at exit; a blocked stderr gets no more


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Puts records on the queue without waiting; counts those that did not
    fit.  Owns the thread that writes them to ``fd``; ``close()`` (called by
    ``logging.shutdown()`` at exit, and by a pre-fork worker's exit) lets it
    write what is queued, for ``_FLUSH_AT_EXIT`` seconds at most."""

    def __init__(self, fd: int) -> None:
        self._q: "queue.Queue[Optional[logging.LogRecord]]" = queue.Queue(QUEUE_SIZE)
        super().__init__(self._q)
        self._fd = fd
        self._fmt = logging.Formatter(FORMAT)
        self._writer: Optional[threading.Thread] = None
        self.start_writer()

    def start_writer(self) -> None:
        """A fresh queue and the thread that writes it out: at creation, and
        in a forked child (a ``--workers`` worker), which has this handler
        but not its thread, and whose copy of the old queue's lock may have
        been held by the writer at the fork."""
        self._q = self.queue = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._count_lock = threading.Lock()
        self._writer = threading.Thread(target=_write, args=(self._q, self, self._fmt, self._fd),
                                        name="cymongoose-log", daemon=True)
        self._writer.start()

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self._q.put_nowait(record)
        except queue.Full:
            with self._count_lock:
                self.dropped += 1

    def take_dropped(self) -> int:
        # Its own lock, not the handler's: logging.shutdown() holds that
        # one while close() waits for this thread.
        with self._count_lock:
            dropped, self.dropped = self.dropped, 0
        return dropped

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer.is_alive():
            deadline = time.monotonic() + _FLUSH_AT_EXIT
            try:
                self._q.put(None, timeout=_FLUSH_AT_EXIT)
            except queue.Full:
                pass  # stderr is blocked: what is queued stays unwritten
            else:
                writer.join(max(0.0, deadline - time.monotonic()))
        super().close()


def _write(q: "queue.Queue[Optional[logging.LogRecord]]", source: _DroppingQueueHandler,
           fmt: logging.Formatter, fd: int) -> None:
    run_as_helper()
    # os.write on the descriptor, not a Handler or sys.stderr: a write that
    # blocks must hold no lock that logging.shutdown() or the interpreter's
    # exit would wait for.
    while True:
        record = q.get()
        if record is None:
            return
        lines = []
        dropped = source.take_dropped()
        if dropped:
            lines.append(fmt.format(logging.makeLogRecord({
                "name": "cymongoose.cli", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": "%d log lines dropped: stderr was not keeping up" % dropped})))
        lines.append(fmt.format(record))
        data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            pass  # stderr is gone: nothing to tell, nobody to tell it to


def configure(level: Any, stream: Any = None) -> None:
    """Log at ``level`` to ``stream`` (stderr) through a queue and a writer thread.

    Does nothing when the root logger already has handlers, like
    ``logging.basicConfig``.  A process forked afterwards gets a writer
    thread of its own.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    source = _DroppingQueueHandler((sys.stderr if stream is None else stream).fileno())
    root.addHandler(source)
    root.setLevel(level)
    os.register_at_fork(after_in_child=source.start_writer)
