"""The command-line servers on PyPy: a nursery of ``NURSERY`` bytes.

PyPy sizes its nursery (where new objects are made) at half the "cache
size" that /proc/cpuinfo reports, with no bound either way.  A VM that
reports 480 MiB of L3 got 240 MB: a server allocates kilobytes per
request, so a nursery that large walks memory the cache cannot hold, and
each minor collection clears all of it.  An AMD EPYC, whose cpuinfo
reports its 1 MiB L2 there (its L3 is 32 MiB), got 1 MB: requests in
flight then outlive most minor collections, and the major ones that their
objects feed set the server's p99.  The nursery is fixed when the
interpreter starts, so a command-line server started without
``PYPY_GC_NURSERY`` whose nursery came out other than ``NURSERY`` starts
itself again (same process id, same arguments) with ``PYPY_GC_NURSERY``
set to it.  Setting ``PYPY_GC_NURSERY`` yourself, to any size, turns this
off.
"""

import os
import platform
import sys
from typing import List, Optional

NURSERY = 16 * 1024 * 1024  # PyPy's own choice on an Intel CPU with a 32 MB L3


def nursery_size() -> int:
    """This PyPy's nursery in bytes (0 on other interpreters, or when unknown)."""
    if platform.python_implementation() != "PyPy":
        return 0
    import gc

    try:  # get_stats() formats its sizes as text; _get_stats() has the numbers
        return int(gc._get_stats().nursery_size)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return 0


def restart_argv() -> Optional[List[str]]:
    """The command line that starts this command again the way it was
    started, or None when that is not known (``main()`` called from ``-c``
    or from a program of its own)."""
    here = os.path.dirname(os.path.realpath(__file__))
    first = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if first == os.path.join(here, "__main__.py"):  # python -m cymongoose
        return [sys.executable, "-m", "cymongoose"] + sys.argv[1:]
    if os.path.basename(first) == "cymongoose" and os.path.isfile(first):  # the script
        return [sys.executable, first] + sys.argv[1:]
    return None


def set_nursery() -> None:
    """Start again with ``PYPY_GC_NURSERY`` when PyPy chose a nursery other
    than ``NURSERY``.

    Returns on CPython, when the variable is set, when the nursery is
    ``NURSERY`` already, or when this command cannot be started again as it
    was (``restart_argv``).
    """
    size = nursery_size()
    if "PYPY_GC_NURSERY" in os.environ or size in (0, NURSERY) or not sys.executable:
        return
    argv = restart_argv()
    if argv is None:
        return
    os.environ["PYPY_GC_NURSERY"] = str(NURSERY)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)
    except OSError:
        del os.environ["PYPY_GC_NURSERY"]
