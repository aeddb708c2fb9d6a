"""Fixtures every test folder gets; the helpers themselves live in the support package."""

from typing import Tuple

import pytest

from support.fixtures import made
from support.loop import LoopThread, serve


@pytest.fixture
def server_factory():
    """Start servers with ``server_factory(handler, url=...)``; all stop at teardown."""
    yield from made(serve, stop_and_close)


def stop_and_close(started: Tuple[LoopThread, int]) -> None:
    loop = started[0]
    loop.stop()
    loop.mgr.close()
