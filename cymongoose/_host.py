"""The host classes the protocol mixins of ``Manager`` and ``Connection`` build on.

``Manager`` is assembled from feature mixins (net, mqtt, timers, wakeup)
and ``Connection`` from protocol mixins (net, mqtt, tls, ws).  Each mixin
subclasses :class:`ManagerHost` or :class:`ConnectionHost`, which declare
the attributes and methods the final class provides, so the mixins are
typed without importing ``manager.py`` or ``connection.py``.

:class:`ManagerHost` also carries the close hook (``_before_free``): a
mixin that needs it overrides it and calls ``super()``, so any number of
them cooperate whatever their order among ``Manager``'s bases.
``poll()`` calls its steps (timers, queued calls) explicitly instead: a
cooperative chain there cost a ``super()`` call per mixin on every poll.
"""

from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional, Type

if TYPE_CHECKING:  # for annotations only: connection.py imports the mixins
    from .connection import Connection, Handler
    from .errors import MongooseError


class ManagerHost:
    """What ``Manager`` provides to its mixins, and the no-op close hook."""

    __slots__ = ()

    _cm: Any  # struct cym_mgr *, None once closed
    _mgr: Any  # struct mg_mgr * inside it
    _inside: int  # >0 while C may be iterating connections (poll, dispatch)
    _poller: int  # ident of the thread inside poll(), 0 between polls
    _loop_thread: int  # ident of the thread that last entered poll()
    _freed: bool
    _calling_c: ContextManager[None]  # the bracket around calls into C (manager.py)

    if TYPE_CHECKING:
        def _check_open(self) -> None:
            raise NotImplementedError

        def _check_thread(self) -> None:
            raise NotImplementedError

        def _report(self, exc: Exception) -> None:
            raise NotImplementedError

        def _defer(self, exc: BaseException) -> None:
            raise NotImplementedError

        def close(self) -> None:
            raise NotImplementedError

        def _open(self, kind: int, url: Any, handler: "Optional[Handler]", error: str,
                  opener: Optional[Callable[[Any, bytes, int], Any]] = None,
                  exc_type: "Type[MongooseError]" = ...) -> "Connection":
            raise NotImplementedError

    def _before_free(self) -> None:
        """Run by ``close()`` after the freed flag is set, before Mongoose frees."""


class ConnectionHost:
    """What ``Connection`` provides to its protocol mixins."""

    __slots__ = ()

    _c: Any  # struct mg_connection *, None once Mongoose closed it
    # The owning Manager (None only on an inert Connection(), whose _c is
    # None too: methods reach _mgr after _live() or a check of _c).
    _mgr: ManagerHost
    _id: int
    _closing: bool

    if TYPE_CHECKING:
        def _live(self) -> Any:
            raise NotImplementedError
