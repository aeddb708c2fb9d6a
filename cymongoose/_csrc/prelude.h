/* Included before mongoose.c (see build_ffi.py).  On CPython, Manager.poll
 * holds the GIL while Mongoose walks its connections (cym_poll in core.c),
 * so that crossings into Python need not take it back each time; the GIL
 * is given up only while mg_iotest waits in epoll_wait, which this wrapper
 * does for the thread that is inside cym_poll. */
#if !defined(PYPY_VERSION) && defined(__linux__)
#include <sys/epoll.h>

static __thread int cym_poll_holds_gil;

static int cym_epoll_wait(int fd, struct epoll_event *evs, int max, int ms) {
  PyThreadState *ts;
  int n;
  if (!cym_poll_holds_gil || ms == 0) return epoll_wait(fd, evs, max, ms);
  ts = PyEval_SaveThread();
  n = epoll_wait(fd, evs, max, ms);
  PyEval_RestoreThread(ts);
  return n;
}
#define epoll_wait cym_epoll_wait
#define CYM_POLL_HOLDS_GIL 1
#endif
