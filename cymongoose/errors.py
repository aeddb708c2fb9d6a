"""Exceptions raised by cymongoose, and the reading of the shim's return codes.

Every error the API promises as ``RuntimeError`` is a :class:`MongooseError`,
which subclasses ``RuntimeError``, so both ``except`` clauses work.
"""

from typing import Dict, Mapping, Optional, Tuple, Type

# The message for any call on a closed Manager.
MANAGER_FREED = "Manager has been freed"


class MongooseError(RuntimeError):
    """Root of cymongoose's own exceptions."""


class ClosedError(MongooseError):
    """The connection or manager has been closed."""


class ThreadError(MongooseError):
    """A method was called from a thread other than the one polling."""


class ListenError(MongooseError):
    """A listener could not be opened (address in use, bad URL, ...)."""


class LifespanError(MongooseError):
    """An ASGI application failed its lifespan startup."""


def _codes() -> Dict[int, Tuple[Type[Exception], str]]:
    # Imported here: the C extension is not needed to import the classes.
    from ._ffi import lib

    return {
        int(lib.CYM_E_NOMEM): (MemoryError, "out of memory"),
        int(lib.CYM_E_CLOSED): (MongooseError, MANAGER_FREED),
        int(lib.CYM_E_SIGNAL): (MongooseError, "cannot signal the poll thread"),
        int(lib.CYM_E_NOT_WS): (MongooseError, "Connection is not a WebSocket"),
        int(lib.CYM_E_WS_CLOSING): (ClosedError, "WebSocket close frame already sent"),
        int(lib.CYM_E_IS_WS): (MongooseError, "Connection is already a WebSocket"),
        int(lib.CYM_E_TLS_ALREADY): (MongooseError, "TLS is already initialised"),
        int(lib.CYM_E_TLS_FREE_PENDING): (MongooseError, "tls_free() is still pending"),
        int(lib.CYM_E_TOO_BIG): (ValueError, "value too large"),
        int(lib.CYM_E_STATE): (MongooseError, "not allowed in this connection state"),
    }


_CODES: Dict[int, Tuple[Type[Exception], str]] = {}


def check(rc: int, messages: Optional[Mapping[int, str]] = None) -> int:
    """Return ``rc`` when it is not negative, else raise the error its ``CYM_E_*`` names.

    Every shim function that can fail returns 0 (``CYM_OK``) or a count on
    success and a negative ``CYM_E_*`` code on failure (``_csrc/codes.h``).
    ``messages`` overrides the default text for some codes; the exception
    class always comes from the code.
    """
    if rc >= 0:
        return rc
    if not _CODES:
        _CODES.update(_codes())
    exc_type, text = _CODES.get(rc, (MongooseError, "error %d" % rc))
    if messages is not None:
        text = messages.get(rc, text)
    raise exc_type(text)
