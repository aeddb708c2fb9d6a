"""Mongoose's own log output, delivered to the Python logger ``"cymongoose"``.

Importing cymongoose
installs a Mongoose log function (``mg_log_set_fn``) that buffers each line
in C and hands complete lines to :mod:`logging`.  Mongoose writes a line
only when its level is at most ``log_get()`` (0, silent, after import), so
``log_set(MG_LL_DEBUG)`` plus an ordinary logging configuration shows them::

    logging.basicConfig(level=logging.DEBUG)
    cymongoose.log_set(cymongoose.MG_LL_DEBUG)

Levels map as MG_LL_ERROR -> ``ERROR``, MG_LL_INFO -> ``INFO``,
MG_LL_DEBUG -> ``DEBUG`` and MG_LL_VERBOSE -> 5 (below ``DEBUG``).  A record's
``pathname``, ``lineno`` and ``funcName`` name the Mongoose source location;
lines without Mongoose's prefix (hexdumps, a message's second line) continue
the previous line of the same thread and share its level.  Hexdumps Mongoose
writes while the level is 0 are dropped, never printed.  The ``"cymongoose"``
logger carries a ``NullHandler``, so nothing reaches stderr unless the
application (or the command line) configures logging.  An exception
raised by a logging handler is printed to stderr; the event loop goes on.
"""

import logging
import re
import threading
from typing import Any, Tuple

from . import _dispatch
from ._ffi import ffi, lib

logger = logging.getLogger("cymongoose")
# A library prints nothing unless the application configures logging (the
# CLI does): without a handler of ours, Python's last-resort handler would
# write every warning to stderr.
logger.addHandler(logging.NullHandler())

VERBOSE = 5
_LEVELS = {1: logging.ERROR, 2: logging.INFO, 3: logging.DEBUG, 4: VERBOSE}

# Mongoose's prefix: "<millis hex> <level> <file>:<line>:<function>", padded
# or cut to 39 characters, then one space; the message starts at column 40.
_PREFIX_LEN = 40
_PREFIX = re.compile(rb"[0-9a-f]+ +([0-9]+) ([^:\s]*):([0-9]+):(\S*)")

_last = threading.local()  # level and source of the thread's last prefixed line
_unpack = ffi.unpack


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


@ffi.def_extern(onerror=_dispatch._on_escape)
def _cym_log_line(buf: Any, n: int) -> None:
    raw = _unpack(buf, n)
    try:
        _emit(raw)
    except Exception as exc:  # a handler that raises: reported, as logging does
        _dispatch.print_exception(exc)


def _emit(raw: bytes) -> None:
    m = _PREFIX.match(raw)
    if m is not None and m.end() < _PREFIX_LEN:
        level = _LEVELS.get(int(m.group(1)), logging.DEBUG)
        where: Tuple[str, int, str] = (_decode(m.group(2)), int(m.group(3)),
                                       _decode(m.group(4)))
        _last.level = level
        _last.where = where
        raw = raw[_PREFIX_LEN:]
        if not raw:  # the message itself starts with a newline
            return
    else:
        level = getattr(_last, "level", logging.DEBUG)
        where = getattr(_last, "where", ("mongoose.c", 0, ""))
    if not logger.isEnabledFor(level):
        return
    logger.handle(logger.makeRecord(logger.name, level, where[0], where[1],
                                    _decode(raw), (), None, where[2]))


lib.cym_log_install()
