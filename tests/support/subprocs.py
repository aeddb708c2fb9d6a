"""Children running the package under test: examples, the CLI, test servers.

Each child imports the package this run imported (``child_env``); ``Proc``
collects its output on a thread and stops it with SIGINT.
"""

import os
import re
import signal
import subprocess
import sys
import threading
from typing import Dict, List, Optional, Union

from support.paths import EXAMPLES, PACKAGE_PARENT

_ADDR = re.compile(r"(?:https?|wss?|mqtts?|tcp|udp)://(?:127\.0\.0\.1|\[::1\]|localhost):(\d+)")


def child_env() -> Dict[str, str]:
    """The environment for a child Python: unbuffered, importing the package under test."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=PACKAGE_PARENT + (os.pathsep + path if path else ""))


class Proc:
    """A subprocess whose output is collected on a thread; stops with SIGINT."""

    def __init__(self, args: List[str], cwd: Optional[str] = None) -> None:
        self.p = subprocess.Popen([sys.executable] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=cwd, env=child_env())
        self.lines: List[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0  # set by whoever learns it from the output

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: "Union[str, re.Pattern[str]]",
                 timeout: float = 20.0) -> "re.Match[str]":
        """Wait until the output matches ``pattern``; fail with the output so far."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._changed:
            self._changed.wait_for(
                lambda: rx.search("".join(self.lines)) or self._eof, timeout)
            found = rx.search("".join(self.lines))
        if not found:
            raise AssertionError("no %r in the output within %.0fs (exit status %s):\n%s"
                                 % (rx.pattern, timeout, self.p.poll(), self.output))
        return found

    def line(self, prefix: str, timeout: float = 20.0) -> str:
        """The first output line that starts with ``prefix`` (waits for it)."""
        return self.wait_for(re.compile("^%s.*$" % re.escape(prefix), re.M), timeout).group(0)

    def printed_port(self, timeout: float = 20.0) -> int:
        """The port of the first address the process printed."""
        return int(self.wait_for(_ADDR, timeout).group(1))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (Ctrl-C), then wait; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("did not stop on SIGINT:\n" + self.output)
        self._reader.join(timeout)
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        self._reader.join(10)


def example(name: str, *args: str) -> Proc:
    return Proc([os.path.join(EXAMPLES, name)] + list(args))


def run_python(*args: str, cwd: Optional[str] = None,
               timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """Run a child Python to completion; stdout and stderr apart."""
    return subprocess.run([sys.executable] + list(args), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=child_env())


def run_example(name: str, *args: str, timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """Run an example to completion (clients, one-shot scripts)."""
    return run_python(os.path.join(EXAMPLES, name), *args, timeout=timeout)


#: The script of the signal and backpressure tests' servers.
LOOP_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_server.py")


def loop_server(mode: str) -> Proc:
    """``loop_server.py MODE`` in a child; its ``port`` is known once it listens."""
    proc = Proc([LOOP_SERVER, mode])
    try:
        proc.port = proc.printed_port()
    except BaseException:
        proc.kill()
        raise
    return proc