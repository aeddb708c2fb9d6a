"""Run ``python -m cymongoose`` as a subprocess of the interpreter under test.

Children import the package under test whether it is installed or built in
place (``support.subprocs.child_env``).
"""

import re
import subprocess
from typing import Optional

from support.subprocs import Proc, run_python

#: The banner every subcommand prints once it listens.
BANNER = re.compile(r"cymongoose .* on ((?:https?|mqtts?)://(\[[0-9a-f:]+\]|[\d.]+):(\d+))/")


def run_cli(*args: str, cwd: Optional[str] = None,
            timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """Run the command line to completion (for --help and bad arguments)."""
    return run_python("-m", "cymongoose", *args, cwd=cwd, timeout=timeout)


class Server(Proc):
    """A ``python -m cymongoose`` server: ``url``, ``host`` and ``port`` come
    from its banner; ``stop()`` sends SIGINT."""

    def __init__(self, *args: str, cwd: Optional[str] = None, timeout: float = 20.0) -> None:
        super().__init__(["-m", "cymongoose"] + list(args), cwd=cwd)
        try:
            found = self.wait_for(BANNER, timeout)
        except BaseException:
            self.kill()
            raise
        self.url = found.group(1)
        self.host = found.group(2).strip("[]")
        self.port = int(found.group(3))

    def stop_cleanly(self) -> None:
        """Stop with SIGINT and check: exit status 0, no traceback."""
        rc = self.stop()
        assert rc == 0, self.output
        assert "Traceback" not in self.output, self.output
