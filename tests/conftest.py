"""Fixtures every test folder gets; the helpers themselves live in the support package."""

from typing import Any, Callable, Optional

import pytest

from support.loop import serve


@pytest.fixture
def server_factory():
    """Start servers with ``server_factory(handler, url=...)``; all stop at teardown."""
    loops = []

    def start(handler: Optional[Callable[..., Any]] = None, url: str = "http://127.0.0.1:0",
              **mgr_kwargs: Any):
        loop, port = serve(handler, url, **mgr_kwargs)
        loops.append(loop)
        return loop, port

    yield start
    for loop in loops:
        loop.stop()
        loop.mgr.close()
