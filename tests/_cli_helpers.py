"""Run ``python -m cymongoose`` as a subprocess of the interpreter under test.

Children get the directory holding the package under test first on
PYTHONPATH, so they import it whether it is installed or built in place.
"""

import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional

import cymongoose

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cymongoose.__file__)))
#: The banner every subcommand prints once it listens.
BANNER = re.compile(r"cymongoose .* on ((?:https?|mqtt)://(\[[0-9a-f:]+\]|[\d.]+):(\d+))/")


def child_env() -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


def run_cli(*args: str, cwd: Optional[str] = None,
            timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """Run the command line to completion (for --help and bad arguments)."""
    return subprocess.run([sys.executable, "-m", "cymongoose"] + list(args), cwd=cwd,
                          env=child_env(), capture_output=True, text=True, timeout=timeout)


class Server:
    """A ``python -m cymongoose`` server: output (stdout and stderr together) is
    collected on a thread, ``url`` comes from its banner, ``stop()`` sends SIGINT."""

    def __init__(self, *args: str, cwd: Optional[str] = None, timeout: float = 20.0) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", "cymongoose"] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  cwd=cwd, env=child_env())
        self.lines: List[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            found = self.wait_for(BANNER, timeout)
        except BaseException:
            self.kill()
            raise
        self.url = found.group(1)
        self.host = found.group(2).strip("[]")
        self.port = int(found.group(3))

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

    def wait_for(self, pattern: Any, timeout: float = 10.0) -> "re.Match[str]":
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

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (Ctrl-C), wait for the exit; returns the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("did not stop on SIGINT:\n" + self.output)
        self._reader.join(timeout)
        return self.p.returncode

    def stop_cleanly(self) -> None:
        """Stop with SIGINT and check: exit status 0, no traceback."""
        rc = self.stop()
        assert rc == 0, self.output
        assert "Traceback" not in self.output, self.output

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        self._reader.join(10)
