"""The WSGI pool's standby poller: lets the poll thread run applications
itself without leaving the server unpolled while they run.

Requests that find the pool idle would otherwise each wake a worker (a
thread switch and a GIL transfer each way, even though the worker then
writes the response itself: ``_wsgi_exchange.Place``).  Instead the poll
thread keeps the requests of such a poll (``batch``) and runs them after
it, one by one (``Standby.run``):

* it *leaves* its place (``cym_park_leave``, ``_csrc/park.c``): workers may
  write into Mongoose meanwhile, as while it waits in epoll_wait, and so
  may the applications it runs;
* each application runs as on a worker, in one of the pool's slots;
* while it leaves now and then, a timer in C wakes the standby thread
  every ``TAKEOVER_MS``; a tick that finds it away since the previous tick,
  with no application finished meanwhile and the poll thread asleep (its
  application waits for a database, a client, another request), makes the
  standby hand the requests not yet started to the pool's workers and poll
  the Manager in the poll thread's place until it returns.  A poll thread
  that is not asleep (an application that computes, or a thread the host
  holds off the CPU for a moment) is taken over after ten such ticks.
  Leaving and returning make no system call, and the timer stops after a
  tick with no leave.
"""

import threading
from collections import deque
from typing import Any, Callable, Deque, Optional

from ._ffi import lib
from ._wsgi_exchange import WsgiExchange

#: The standby's tick: it polls in the poll thread's place after one to two
#: ticks with the poll thread away, asleep, and no application finished
#: (ten ticks when it is not asleep: ``_csrc/park.c``).
TAKEOVER_MS = 1


class Standby:
    """The standby thread of one Manager, whose park (``Manager._park``) it
    shares; started by the first ``run``, ended by ``close``.

    ``take_slot(ident, False)`` takes one of the pool's slots for the poll
    thread, or returns False at once when none is free (the batch then goes
    to the pool), and ``give_slot(ident)`` gives it back: the poll thread
    holds one for a whole batch, as it runs one application at a time.
    ``run(ex)`` runs a request on the calling thread; ``hand_off(ex)`` gives
    it to the pool; ``poll()`` is one poll of the Manager.
    """

    def __init__(self, mgr: Any, take_slot: Callable[[int, bool], bool],
                 give_slot: Callable[[int], None],
                 run: Callable[[WsgiExchange], None], hand_off: Callable[[WsgiExchange], None],
                 poll: Callable[[], None]) -> None:
        self._mgr = mgr
        # A reference of its own: the C struct must outlive the thread's wait.
        self._park = mgr._park
        self._done = lib.cym_park_progress(self._park)
        self._take_slot = take_slot
        self._give_slot = give_slot
        self._run = run
        self._hand_off = hand_off
        self._poll = poll
        #: The requests the poll thread keeps for itself; the standby takes
        #: those not started (each ``popleft`` is atomic).
        self.batch: Deque[WsgiExchange] = deque()
        self._thread: Optional[threading.Thread] = None
        self._ident = 0  # the standby thread's, once started
        self._lock = threading.Lock()
        self._closed = False
        #: What the standby's poll raised, for the poll thread to re-raise.
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        """Run ``batch`` on this (the poll) thread with the place left to
        workers and the standby (to the pool when closed).  Re-raises what
        the standby's poll raised."""
        thread = self._thread or self._start()
        park, mgr = self._park, self._mgr
        me = mgr._loop_thread  # this thread's: its poll() has just set it
        if thread is None or not self._take_slot(me, False):
            self._spill()  # closed, or every slot is a worker's
            return
        if not lib.cym_park_leave(park, TAKEOVER_MS):
            self._give_slot(me)
            self._spill()
            return
        # While away this thread is not the poll thread: a carried call it
        # makes is queued for whoever polls next (``_carry.elsewhere``).
        mgr._loop_thread = self._ident
        try:
            batch = self.batch
            # Several: their whole responses wait for the poll after the
            # batch, which writes them in one burst (``WsgiExchange.held``).
            held = len(batch) > 1
            pop, run, done = batch.popleft, self._run, self._done
            # Tested before each pop, so that a batch run to its end raises
            # nothing; the except is for the standby emptying it meanwhile.
            while batch:
                try:
                    ex = pop()
                except IndexError:
                    break
                ex.held = held
                run(ex)
                done[0] = 1
        finally:
            self._give_slot(me)
            if lib.cym_park_return(park):
                try:
                    mgr.wakeup(mgr.wakeup_id, b"")  # end the standby's poll now
                except RuntimeError:
                    pass  # closed: its poll raises and it gives up
                lib.cym_park_reclaim(park)
            mgr._loop_thread = me
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _spill(self) -> None:
        pop, hand_off = self.batch.popleft, self._hand_off
        while True:
            try:
                ex = pop()
            except IndexError:
                return
            hand_off(ex)

    def _start(self) -> Optional[threading.Thread]:
        with self._lock:
            if self._closed:
                return None
            if self._thread is None:
                t = threading.Thread(target=self._wait, name="cymongoose-wsgi-standby",
                                     daemon=True)
                t.start()
                self._thread = t
                self._ident = t.ident or 0
            return self._thread

    def _wait(self) -> None:
        park, poll = self._park, self._poll
        while lib.cym_park_standby(park) > 0:
            try:
                self._spill()
                while not lib.cym_park_standby_done(park, 0):
                    poll()
            except BaseException as exc:  # handed to the poll thread, not lost
                self._error = exc
                lib.cym_park_standby_done(park, 1)

    def close(self) -> None:
        """End the standby thread (it returns from its wait at once) and
        drop the requests not started."""
        with self._lock:
            self._closed = True
        lib.cym_park_close(self._park)
        while self.batch:
            try:
                self.batch.popleft().mark_dead()
            except IndexError:
                break
