"""cymongoose.asgi runs each request's application in a task and a context
of its own, whether a connection's requests share one task (the default on
PyPy, ``_asgi_runner``) or each gets a task (the default on CPython): both
ways are tested on both interpreters."""

import asyncio
import contextvars
import select
import socket
import threading
from typing import Any, Dict, List

import pytest

from cymongoose import _asgi_runner
from support.loop import wait_until
from support.servers import AsgiThread, started
from support.sockets import read_until

SEEN: "contextvars.ContextVar[str]" = contextvars.ContextVar("SEEN", default="unset")


def _mode(per_connection: bool) -> Any:
    def configure(server: Any) -> None:
        server._per_connection = per_connection
    return configure


@pytest.fixture(params=[True, False], ids=["per-connection", "per-request"])
def mode(request: Any) -> Any:
    """Sets how the server runs applications (before it starts)."""
    return _mode(request.param)


@pytest.fixture
def start(mode: Any) -> Any:
    for make in started(AsgiThread):
        def start_server(app: Any, **options: Any) -> AsgiThread:
            return make(app, configure=mode, **options)
        yield start_server


async def reply(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def get(sock: socket.socket, path: str) -> bytes:
    """One request on a kept-alive socket; the body of its response."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    got = read_until(sock, lambda b: b"\r\n\r\n" in b and
                     len(b.split(b"\r\n\r\n", 1)[1]) >= _length(b))
    return got.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def test_each_request_sees_a_fresh_context_and_a_task(start: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        before = SEEN.get()
        SEEN.set(scope["path"])
        task = asyncio.current_task()
        await asyncio.sleep(0)  # a step after a suspension runs in the same context
        await reply(send, ("%s %s %s" % (before, SEEN.get(), task is not None)).encode())

    srv = start(app, lifespan="off")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert get(s, "/one") == b"unset /one True"
        assert get(s, "/two") == b"unset /two True"
    assert SEEN.get() == "unset"


def test_timeouts_cancel_only_what_they_wrap(start: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.05)
            text = b"no timeout"
        except asyncio.TimeoutError:
            text = b"timed out"
        await reply(send, text)

    srv = start(app, lifespan="off")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert get(s, "/a") == b"timed out"
        assert get(s, "/b") == b"timed out"  # the connection's task was not hurt


def test_an_app_still_running_after_its_response_does_not_hold_up_the_next(start: Any) -> None:
    gate = threading.Event()
    finished: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await reply(send, scope["path"].encode())
        if scope["path"] == "/slow":
            # Background work after the response, as Starlette's BackgroundTasks do.
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        finished.append(scope["path"])

    srv = start(app, lifespan="off")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            assert get(s, "/slow") == b"/slow"
            assert get(s, "/next") == b"/next"
            assert get(s, "/third") == b"/third"
        # A response can reach the client before its app returns.
        wait_until(lambda: len(finished) == 2)
        assert finished == ["/next", "/third"]
    finally:
        gate.set()
    wait_until(lambda: len(finished) == 3)
    assert finished[-1] == "/slow"


def test_a_lone_requests_whole_response_is_on_the_wire_when_send_returns(start: Any) -> None:
    """No further poll is needed to send it: the client can read it while
    the application still runs."""
    client: Dict[str, socket.socket] = {}
    readable: List[bool] = []
    checked = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await reply(send, b"now")
        # Blocks the loop, so no poll can send it meanwhile: either it has
        # left already (loopback delivers it within microseconds) or it
        # never arrives in this wait.  The client reads only afterwards.
        readable.append(bool(select.select([client["sock"]], [], [], 5)[0]))
        checked.set()

    srv = start(app, lifespan="off")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        client["sock"] = s
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert checked.wait(10)
        assert read_until(s, lambda b: b.endswith(b"\r\n\r\nnow")).startswith(b"HTTP/1.1 200 ")
    assert readable == [True]


def test_an_exception_in_one_request_leaves_the_connection_serving(start: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await reply(send, b"fine")

    srv = start(app, lifespan="off")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_until(s, lambda b: b"\r\n\r\n" in b)
        assert got.startswith(b"HTTP/1.1 500 ")
        rest = got.split(b"\r\n\r\n", 1)[1]
        rest += read_until(s, lambda b: len(rest + b) >= _length(got))
        assert get(s, "/ok") == b"fine"


def test_stop_cancels_what_outlives_the_grace_period(mode: Any) -> None:
    started_ev = threading.Event()
    outcome: Dict[str, str] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/quick":
            await reply(send, b"quick")
            return
        started_ev.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome["hang"] = "cancelled"
            raise

    srv = AsgiThread(app, configure=mode, lifespan="off", graceful_timeout=0.2)
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    hung = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    stopped = False
    try:
        assert get(idle, "/quick") == b"quick"  # its task now waits for a next request
        hung.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        assert started_ev.wait(10)
        srv.stop()
        stopped = True
        assert outcome == {"hang": "cancelled"}
        assert not srv.server._running
        assert not srv.server._runners
    finally:
        idle.close()
        hung.close()
        if not stopped:
            srv.stop()


def test_a_closed_connection_ends_its_task(start: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await reply(send, b"x")

    srv = start(app, lifespan="off")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            assert get(s, "/") == b"x"
    wait_until(lambda: not srv.server._runners and not srv.server._running)


def test_the_default_follows_the_interpreter() -> None:
    import platform
    assert _asgi_runner.PER_CONNECTION == (platform.python_implementation() == "PyPy")


def test_what_send_returns_works_wherever_an_awaitable_does(start: Any) -> None:
    # send() returns an awaitable that may already be done, not a coroutine.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.wait_for(send({"type": "http.response.start", "status": 200,
                                     "headers": [(b"content-length", b"4")]}), 5)
        await asyncio.ensure_future(send({"type": "http.response.body", "body": b"done"}))

    srv = start(app, lifespan="off")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert get(s, "/") == b"done"
        assert get(s, "/again") == b"done"
