"""Logging to stderr for the command line and the blocking ``serve()``
functions: records go out from a thread of their own.

A server must not stop serving because nobody reads its stderr (a full pipe
blocks every write to it).  The serving threads only put records on a
bounded queue, never waiting; a daemon thread writes them out.  When the
queue is full, records are dropped and counted, and the writer says how
many before the next line it writes.
"""

import atexit
import logging
import logging.handlers
import os
import queue
import sys
import threading
from typing import Any, Optional

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUEUE_SIZE = 10000
_FLUSH_AT_EXIT = 2.0  # seconds the writer gets at exit; a blocked stderr gets no more


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Puts records on the queue without waiting; counts those that did not fit."""

    def __init__(self, q: "queue.Queue[Optional[logging.LogRecord]]") -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1  # under the handler's lock

    def take_dropped(self) -> int:
        self.acquire()
        try:
            dropped, self.dropped = self.dropped, 0
        finally:
            self.release()
        return dropped


def _write(q: "queue.Queue[Optional[logging.LogRecord]]", source: _DroppingQueueHandler,
           fmt: logging.Formatter, fd: int) -> None:
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
    ``logging.basicConfig``.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    q: "queue.Queue[Optional[logging.LogRecord]]" = queue.Queue(QUEUE_SIZE)
    source = _DroppingQueueHandler(q)
    fd = (sys.stderr if stream is None else stream).fileno()
    writer = threading.Thread(target=_write, args=(q, source, logging.Formatter(FORMAT), fd),
                              name="cymongoose-log", daemon=True)
    writer.start()
    root.addHandler(source)
    root.setLevel(level)

    def flush() -> None:
        try:
            q.put_nowait(None)
        except queue.Full:
            return
        writer.join(_FLUSH_AT_EXIT)

    atexit.register(flush)
