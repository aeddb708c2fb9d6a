"""Timers: Manager.timer_add and Timer."""

import gc
import pickle
import threading
import time

import pytest

import cymongoose as cm
from support.loop import LoopThread, wait_until


def poll_for(mgr: cm.Manager, seconds: float, poll_ms: int) -> None:
    """Poll ``mgr`` on this thread for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mgr.poll(poll_ms)


@pytest.fixture
def mgr():
    m = cm.Manager()
    yield m
    m.close()


@pytest.mark.parametrize("poll_ms", [10, 1000])
def test_repeating_100ms_timer_fires_10_times_in_1s(mgr, poll_ms):
    # poll_ms=1000: the poll's I/O wait is cut short for the timer.
    fired = []
    timer = mgr.timer_add(100, lambda: fired.append(time.monotonic()), repeat=True)
    poll_for(mgr, 1.0, poll_ms)
    assert 8 <= len(fired) <= 12, fired
    assert timer.active


def test_run_now_fires_on_the_first_poll_and_only_once(mgr):
    fired = []
    timer = mgr.timer_add(10_000, lambda: fired.append(1), run_now=True)
    assert fired == []  # never synchronously
    start = time.monotonic()
    mgr.poll(0)
    assert fired == [1]
    assert time.monotonic() - start < 0.5
    assert not timer.active  # one-shot: done
    poll_for(mgr, 0.1, 10)
    assert fired == [1]


def test_repeating_run_now_fires_at_once_then_every_period(mgr):
    fired = []
    mgr.timer_add(50, lambda: fired.append(time.monotonic()), repeat=True, run_now=True)
    mgr.poll(0)
    assert len(fired) == 1
    poll_for(mgr, 0.3, 10)
    assert 4 <= len(fired) <= 8


def test_one_shot_fires_once_and_turns_inactive(mgr):
    fired = []
    timer = mgr.timer_add(20, lambda: fired.append(timer.active))
    assert timer.active
    wait = time.monotonic() + 5
    while not fired and time.monotonic() < wait:
        mgr.poll(50)
    assert fired == [False]  # inactive from the moment it fires
    poll_for(mgr, 0.1, 10)
    assert len(fired) == 1
    assert not timer.active
    timer.cancel()  # no-op once done


def test_zero_ms_timer_fires_on_next_poll(mgr):
    fired = []
    mgr.timer_add(0, lambda: fired.append(1))
    mgr.poll(0)
    assert fired == [1]


def test_repeating_zero_ms_timer_runs_once_per_poll_without_spinning(mgr):
    fired = []
    mgr.timer_add(0, lambda: fired.append(1), repeat=True)
    start = time.monotonic()
    for _ in range(4):
        mgr.poll(50)
    assert len(fired) == 4
    assert time.monotonic() - start >= 0.14  # the later polls waited their timeout


def test_cancelled_timer_never_fires_again(mgr):
    fired = []
    timer = mgr.timer_add(10, lambda: fired.append(1), repeat=True)
    poll_for(mgr, 0.1, 5)
    assert fired
    timer.cancel()
    assert not timer.active
    timer.cancel()  # idempotent
    count = len(fired)
    poll_for(mgr, 0.1, 5)
    assert len(fired) == count


def test_cancel_before_first_poll_means_never(mgr):
    fired = []
    timer = mgr.timer_add(0, lambda: fired.append(1), run_now=True)
    timer.cancel()
    poll_for(mgr, 0.05, 5)
    assert fired == []


def test_cancel_from_inside_its_own_callback(mgr):
    fired = []

    def tick():
        fired.append(1)
        timer.cancel()

    timer = mgr.timer_add(5, tick, repeat=True)
    poll_for(mgr, 0.1, 5)
    assert fired == [1]


def test_cancel_from_another_thread_while_polling():
    mgr = cm.Manager()
    loop = LoopThread(mgr, poll_ms=5).start()
    try:
        fired = []
        timer = loop.call(lambda: mgr.timer_add(5, lambda: fired.append(1), repeat=True))
        wait_until(lambda: len(fired) >= 5)
        done = []

        def cancel():
            timer.cancel()
            done.append(len(fired))

        threads = [threading.Thread(target=cancel) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(done) == 4 and not timer.active
        for _ in range(10):  # ten more polls, each long enough for the period
            loop.call(lambda: None)
        # At most one callback was already running when cancel() returned.
        assert len(fired) <= min(done) + 1
        assert loop.call(lambda: timer._id not in mgr._timers)
    finally:
        loop.stop()
        mgr.close()


def test_timer_keeps_working_when_reference_dropped(mgr):
    fired = []
    mgr.timer_add(5, lambda: fired.append(1), repeat=True)
    gc.collect()
    poll_for(mgr, 0.1, 5)
    gc.collect()
    poll_for(mgr, 0.1, 5)
    assert len(fired) >= 10


def test_exception_goes_to_error_handler_and_timer_keeps_running():
    errors = []
    mgr = cm.Manager(error_handler=errors.append)
    try:
        calls = []

        def boom():
            calls.append(1)
            raise ValueError("tick %d" % len(calls))

        mgr.timer_add(5, boom, repeat=True)
        poll_for(mgr, 0.1, 5)
        assert len(calls) >= 3
        assert len(errors) == len(calls)
        assert all(isinstance(e, ValueError) for e in errors)
        assert str(errors[0]) == "tick 1"
    finally:
        mgr.close()


def test_exception_without_error_handler_is_printed(mgr, capfd):
    calls = []

    def boom():
        calls.append(1)
        raise KeyError("timer-boom")

    mgr.timer_add(5, boom, repeat=True)
    poll_for(mgr, 0.1, 5)
    assert len(calls) >= 3
    err = capfd.readouterr().err
    assert err.count("KeyError: 'timer-boom'") == len(calls)
    assert "Traceback" in err


def test_non_callable_callback_is_reported():
    errors = []
    mgr = cm.Manager(error_handler=errors.append)
    try:
        mgr.timer_add(0, 42)
        mgr.poll(0)
        assert len(errors) == 1 and isinstance(errors[0], TypeError)
    finally:
        mgr.close()


def test_keyboard_interrupt_in_callback_is_raised_by_poll(mgr):
    def interrupt():
        raise KeyboardInterrupt

    after = []
    mgr.timer_add(0, interrupt)
    mgr.timer_add(0, lambda: after.append(1))
    with pytest.raises(KeyboardInterrupt):
        mgr.poll(0)
    assert after == [1]  # the loop finished its iteration first
    mgr.poll(0)  # and the Manager still works


def test_callback_may_add_and_cancel_timers(mgr):
    fired = []
    victim = mgr.timer_add(20, lambda: fired.append("victim"), repeat=True)

    def first():
        fired.append("first")
        victim.cancel()
        mgr.timer_add(0, lambda: fired.append("second"))

    mgr.timer_add(0, first)
    poll_for(mgr, 0.1, 5)
    assert fired == ["first", "second"]


def test_close_deactivates_timers_and_timer_add_then_raises():
    mgr = cm.Manager()
    fired = []
    timers = [mgr.timer_add(5, lambda: fired.append(1), repeat=True) for _ in range(3)]
    mgr.poll(0)
    mgr.close()
    assert not any(t.active for t in timers)
    for t in timers:
        t.cancel()  # no-op after close
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        mgr.timer_add(5, lambda: None)
    assert not mgr._timers


def test_argument_checks(mgr):
    with pytest.raises(OverflowError):
        mgr.timer_add(-1, lambda: None)
    with pytest.raises(OverflowError):
        mgr.timer_add(2**64, lambda: None)
    with pytest.raises(TypeError):
        mgr.timer_add("10", lambda: None)
    with pytest.raises(TypeError):
        mgr.timer_add(10, lambda: None, True)  # repeat is keyword-only
    timer = mgr.timer_add(10.9, lambda: None)  # a float is truncated
    assert timer.active


def test_bare_timer_is_inert():
    timer = cm.Timer()
    assert not timer.active
    assert timer.cancel() is None
    with pytest.raises(TypeError):
        pickle.dumps(timer)


def test_handles_are_released(mgr):
    for _ in range(100):
        mgr.timer_add(0, lambda: None)
    mgr.timer_add(1000, lambda: None).cancel()
    mgr.poll(0)
    assert len(mgr._timers) == 0
