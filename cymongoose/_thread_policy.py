"""The scheduling policy of the package's helper threads.

A helper thread (a WSGI worker given a request, the log writer given a
line) is woken by the poll thread, which still holds the GIL and goes on
running.  On the same core, Linux lets the woken thread preempt it at once,
only for that thread to find the GIL taken and sleep again: two context
switches for nothing, several times per request.  Under ``SCHED_BATCH`` a
woken thread does not preempt; it runs once the poll thread blocks (in
``epoll_wait``, with the GIL released) or its time slice ends, and it keeps
its fair share of the CPU.
"""

import os


def run_as_helper() -> None:
    """Put the calling thread under ``SCHED_BATCH`` (Linux; elsewhere, or
    where the system refuses, the thread keeps its policy)."""
    setter = getattr(os, "sched_setscheduler", None)
    batch = getattr(os, "SCHED_BATCH", None)
    if setter is None or batch is None:
        return
    try:
        setter(0, batch, os.sched_param(0))  # pid 0: this thread only
    except OSError:
        pass  # a seccomp filter or a container's policy: keep the default
