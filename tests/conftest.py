"""Fixtures every test folder gets; the helpers themselves live in the support package."""

from typing import Tuple

import pytest

from cymongoose import limits

from support.fixtures import made
from support.loop import LoopThread, serve


@pytest.fixture(autouse=True)
def fresh_log_limiter():
    """Every test starts with no peer's log share used: all its clients are 127.0.0.1."""
    limits._limiter.reset()


@pytest.fixture
def server_factory():
    """Start servers with ``server_factory(handler, url=...)``; all stop at teardown."""
    yield from made(serve, stop_and_close)


def stop_and_close(started: Tuple[LoopThread, int]) -> None:
    loop = started[0]
    loop.stop()
    loop.mgr.close()
