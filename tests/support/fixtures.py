"""The body of a factory fixture: make things during the test, finish them all at teardown."""

from typing import Any, Callable, Iterator, List, TypeVar

T = TypeVar("T")


def made(make: Callable[..., T], finish: Callable[[T], Any]) -> Iterator[Callable[..., T]]:
    """Yield ``make``, remembering what it returns; at teardown ``finish`` each, in order.

    A fixture writes ``yield from made(Thing, Thing.stop)``.
    """
    things: List[T] = []

    def start(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        things.append(thing)
        return thing

    yield start
    for thing in things:
        finish(thing)
