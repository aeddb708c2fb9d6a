"""Helpers for the loop tests: a server subprocess whose output is read with timeouts."""

import os
import queue
import subprocess
import sys
import threading
from typing import List

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_server.py")


class ServerProcess:
    """``loop_server.py MODE`` in a subprocess, its stdout read on a thread."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, mode], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        first = self.expect("port")
        self.port = int(first.split()[1])
        self.first = first

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next output line starting with ``prefix``; fails after ``timeout``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("server printed no %r within %.0fs (seen %r)"
                                     % (prefix, timeout, self.seen)) from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line
            if line == "<eof>":
                err = self.proc.stderr.read()  # type: ignore[union-attr]
                raise AssertionError("server exited before %r: %r\n%s"
                                     % (prefix, self.seen, err))

    def stop(self) -> None:
        """Kill the process if it is still running (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
