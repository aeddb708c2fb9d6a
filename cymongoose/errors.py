"""Exceptions raised by cymongoose.

Every error the spec promises as ``RuntimeError`` is a :class:`MongooseError`,
which subclasses ``RuntimeError``, so both ``except`` clauses work.
"""


# The spec's message for any call on a closed Manager.
MANAGER_FREED = "Manager has been freed"


class MongooseError(RuntimeError):
    """Root of cymongoose's own exceptions."""


class ClosedError(MongooseError):
    """The connection or manager has been closed."""


class ThreadError(MongooseError):
    """A method was called from a thread other than the one polling."""
