"""AsyncManager: a Manager on its own thread next to an asyncio loop."""

import asyncio
import socket
import threading
import time
import warnings

import httpx
import pytest

import cymongoose as cm
from cymongoose.aio import AsyncManager


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_exported_at_top_level():
    assert cm.AsyncManager is AsyncManager
    assert "AsyncManager" in cm.__all__


def test_serves_http_while_other_tasks_run_and_shuts_down_cleanly():
    poll_threads = set()

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn, ev, hm):
        poll_threads.add(threading.get_ident())
        if hm.uri == "/slow":
            time.sleep(0.2)  # work that holds the poll thread, not the asyncio loop
        conn.reply(200, b"hello " + hm.uri.encode())

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        async with AsyncManager(handler) as am:
            assert am.running
            port = am.listen("http://127.0.0.1:0").local_addr[1]
            task = asyncio.ensure_future(ticker())
            async with httpx.AsyncClient() as client:
                before = ticks
                replies = await asyncio.gather(*[
                    client.get("http://127.0.0.1:%d/r%d" % (port, i), timeout=10)
                    for i in range(20)])
                during = ticks - before
                before = ticks
                slow = await client.get("http://127.0.0.1:%d/slow" % port, timeout=10)
                during_slow = ticks - before
            stop.set()
            await task
            thread = am._thread
        assert [r.text for r in replies] == ["hello /r%d" % i for i in range(20)]
        assert during > 0  # the loop kept running other tasks meanwhile
        assert slow.text == "hello /slow"
        assert during_slow >= 5  # ~40 possible: a busy handler does not stall asyncio
        assert poll_threads == {thread.ident}
        assert thread.ident != threading.get_ident()
        assert not thread.is_alive()
        assert not am.running and am._manager is None and am._thread is None
        assert am._loop is None
        assert port_refuses(port)

    run(main())


def test_schedule_hands_results_from_handlers_to_the_loop():
    async def main():
        results: "asyncio.Queue[bytes]" = asyncio.Queue()
        seen_on = []

        async def put(data):
            seen_on.append(threading.get_ident())
            await results.put(data)

        def handler(conn, ev, data):
            if ev == cm.MG_EV_WAKEUP:
                am.schedule(put(data))  # a coroutine
                am.schedule(lambda: results.put_nowait(b"callable " + data))

        am = AsyncManager(handler)
        async with am:
            conn = am.listen("tcp://127.0.0.1:0")
            assert am.wakeup(conn.id, b"x" * 200_000) is True
            first = await asyncio.wait_for(results.get(), 10)
            second = await asyncio.wait_for(results.get(), 10)
        assert sorted([first, second]) == sorted([b"x" * 200_000, b"callable " + b"x" * 200_000])
        assert seen_on == [threading.get_ident()]

    run(main())


def test_timer_add_runs_on_the_poll_thread():
    async def main():
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        threads = []

        def tick():
            threads.append(threading.get_ident())
            loop.call_soon_threadsafe(fired.set)

        async with AsyncManager() as am:
            timer = am.timer_add(10, tick, repeat=True)
            await asyncio.wait_for(fired.wait(), 10)
            poll_thread = am._thread.ident
            assert timer.active
        assert set(threads) == {poll_thread}
        assert not timer.active  # the Manager closed

    run(main())


def test_delegates_from_a_handler_on_the_poll_thread():
    # The lock is reentrant: a handler may call AsyncManager methods.
    async def main():
        loop = asyncio.get_running_loop()
        opened = asyncio.Event()

        def handler(conn, ev, data):
            if ev == cm.MG_EV_WAKEUP:
                am.listen("tcp://127.0.0.1:0")
                loop.call_soon_threadsafe(opened.set)

        am = AsyncManager(handler)
        async with am:
            first = am.listen("tcp://127.0.0.1:0")
            am.wakeup(first.id, b"go")
            await asyncio.wait_for(opened.wait(), 10)
            assert len([c for c in am.manager.connections if c.is_listening]) == 2

    run(main())


def test_enter_exit_cycles_repeat():
    async def main():
        am = AsyncManager(poll_interval=10)
        ports = []
        for _ in range(3):
            async with am:
                ports.append(am.listen("tcp://127.0.0.1:0").local_addr[1])
                assert am.running
            assert not am.running and am._manager is None
        assert all(port_refuses(p) for p in ports)

    run(main())


def test_not_started_errors_and_rejected_keyword():
    am = AsyncManager()
    for call in (lambda: am.manager, lambda: am.listen("tcp://127.0.0.1:0"),
                 lambda: am.timer_add(1, lambda: None), lambda: am.wakeup(1),
                 lambda: am.schedule(lambda: None), lambda: am.connect("tcp://127.0.0.1:1")):
        with pytest.raises(RuntimeError, match="AsyncManager is not started"):
            call()
    assert not am.running
    assert am._MAX_POLL_MS == 200
    with pytest.raises(TypeError):
        AsyncManager(enable_wakeup=True)


def test_exceptions_inside_async_with_propagate_and_still_shut_down():
    async def main():
        am = AsyncManager()
        with pytest.raises(ZeroDivisionError):
            async with am:
                port = am.listen("tcp://127.0.0.1:0").local_addr[1]
                1 / 0
        assert am._manager is None and port_refuses(port)

    run(main())


def test_blocked_handler_is_abandoned_after_shutdown_timeout():
    release = threading.Event()
    entered = threading.Event()

    def handler(conn, ev, data):
        if ev == cm.MG_EV_WAKEUP:
            entered.set()
            release.wait(30)  # a handler that blocks

    async def main():
        am = AsyncManager(handler, shutdown_timeout=0.3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with am:
                conn = am.listen("tcp://127.0.0.1:0")
                am.wakeup(conn.id, b"block")
                await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
        assert any("did not stop within 0.3s; abandoning thread" in m for m in messages)
        assert am._manager is not None and not am.running
        thread = am._thread
        release.set()
        thread.join(10)
        am._manager.close()

    run(main())


# -- on_loop=True: polled from the asyncio loop, no thread ---------------------------------

def test_on_loop_handlers_run_on_the_loop_thread_and_touch_asyncio_directly():
    threads = set()
    seen = []

    async def main():
        got = asyncio.Event()

        @cm.handles(cm.MG_EV_HTTP_MSG)
        def handler(conn, ev, hm):
            threads.add(threading.get_ident())
            seen.append(hm.uri)
            got.set()  # an asyncio object, touched from the handler itself
            conn.reply(200, b"hello " + hm.uri.encode())

        fired = asyncio.Event()
        async with AsyncManager(handler, on_loop=True) as am:
            assert am.running and am._thread is None
            port = am.listen("http://127.0.0.1:0").local_addr[1]
            am.timer_add(10, fired.set)
            async with httpx.AsyncClient() as client:
                replies = await asyncio.gather(*[
                    client.get("http://127.0.0.1:%d/r%d" % (port, i), timeout=10)
                    for i in range(20)])
            await asyncio.wait_for(got.wait(), 10)
            await asyncio.wait_for(fired.wait(), 10)
            # From another thread the call is carried to the loop's thread.
            loop = asyncio.get_running_loop()
            other = await loop.run_in_executor(None, am.listen, "http://127.0.0.1:0")
            assert other.local_addr[1] > 0
            manager = am.manager
        assert [r.text for r in replies] == ["hello /r%d" % i for i in range(20)]
        assert threads == {threading.get_ident()}
        assert not am.running and am._manager is None
        with pytest.raises(RuntimeError):
            manager.poll(0)  # closed on exit
        assert port_refuses(port)

    run(main())


def test_on_loop_enter_exit_cycles_repeat():
    async def main():
        am = AsyncManager(on_loop=True)
        for _ in range(3):
            async with am:
                port = am.listen("http://127.0.0.1:0").local_addr[1]
            assert port_refuses(port)

    run(main())
