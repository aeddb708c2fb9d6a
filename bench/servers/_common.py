"""What every benchmark server shares: arguments, the ready line, the loop.

The servers run unchanged on our package and on the Cython package 0.2.5
(same import name, same API), each in its own interpreter or virtualenv;
only the ``declared`` variants need ``cymongoose.handles``, which 0.2.5
lacks.  They print one ``READY {json}`` line once listening, so the runner
knows which package and interpreter it started, then poll until SIGTERM.
"""

import json
import os
import platform
import resource
import signal
import sys
from typing import Any, List

import cymongoose


def raise_fd_limit() -> None:
    """1,000 idle connections need more than the usual 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ready(variant: str) -> None:
    """Announce the server: variant, package version and file, interpreter."""
    info = {
        "variant": variant,
        "package": getattr(cymongoose, "__version__", "?"),
        "file": os.path.dirname(cymongoose.__file__),
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "pid": os.getpid(),
    }
    print("READY " + json.dumps(info), flush=True)


def serve(mgr: Any) -> None:
    """Poll until SIGTERM or SIGINT, then close the manager."""
    stop: List[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        mgr.poll(100)
    mgr.close()


def usage(doc: str) -> None:
    sys.stderr.write(doc)
    sys.exit(2)
