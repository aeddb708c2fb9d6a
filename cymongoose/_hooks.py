"""The points where feature mixins join ``Manager.poll`` and ``Manager.close``.

Each mixin that needs a hook subclasses :class:`LoopHooks`, overrides the
hook and calls ``super()``, so any number of them cooperate whatever their
order among ``Manager``'s bases.
"""


class LoopHooks:
    """No-op hooks, last in the method resolution order of ``Manager``."""

    __slots__ = ()

    def _before_poll(self, timeout_ms: int) -> int:
        """Run at the start of every poll; returns the I/O wait to use."""
        return timeout_ms

    def _after_poll(self) -> None:
        """Run on the poll thread after Mongoose's poll, still inside the C bracket."""

    def _before_free(self) -> None:
        """Run by ``close()`` after the freed flag is set, before Mongoose frees."""
