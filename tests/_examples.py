"""Run an example or the CLI as a subprocess and find the address it listens on."""

import os
import re
import signal
import subprocess
import sys
import threading
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
_ADDR = re.compile(r"(?:https?|wss?|mqtts?)://(?:127\.0\.0\.1|\[::1\]|localhost):(\d+)")


class Proc:
    """A subprocess whose output is collected on a thread; stops with SIGINT."""

    def __init__(self, args: List[str], cwd: Optional[str] = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
        self.lines: List[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> "re.Match[str]":
        """Wait until the output matches ``pattern``; fail with the output so far."""
        rx = re.compile(pattern)
        with self._changed:
            ok = self._changed.wait_for(
                lambda: rx.search(self.output) or self.p.poll() is not None, timeout)
        found = rx.search(self.output)
        if not ok or not found:
            raise AssertionError("no %r in output within %.0fs:\n%s" % (pattern, timeout, self.output))
        return found

    def port(self, timeout: float = 20.0) -> int:
        return int(self.wait_for(_ADDR.pattern, timeout).group(1))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (Ctrl-C), then wait; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout)
                raise AssertionError("did not stop on SIGINT:\n" + self.output)
        self._reader.join(timeout)
        return self.p.returncode


def example(name: str, *args: str) -> Proc:
    return Proc([os.path.join(EXAMPLES, name)] + list(args))


def cli(*args: str, cwd: Optional[str] = None) -> Proc:
    return Proc(["-m", "cymongoose"] + list(args), cwd=cwd)
