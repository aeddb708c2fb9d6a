/* Who may touch the manager besides the thread that polls it (WSGI pool).
 *
 * The place.  A worker that finished a response used to queue it for the
 * poll thread and ring the doorbell: the poll thread woke up, ran the
 * flush in Python, and went back to epoll_wait, per request.  Mongoose's
 * poll thread touches no connection while it waits in epoll_wait (vendor
 * patch 0085 calls cym_park_wait around it), so during the wait a worker
 * may take its place: cym_park_take succeeds only then, and the poll
 * thread, back from epoll_wait, waits in cym_park_wait until that worker
 * calls cym_park_give.  Everything the worker does in between runs as if on
 * the poll thread (it must fire no event).
 *
 * Leaving.  Requests that find the pool idle are run by the poll thread
 * itself, after its poll: no worker has to be woken for them.  Meanwhile
 * nobody polls (cym_park_leave: the place is vacant, and workers may take
 * it as during a wait).  An application may take long or wait for another
 * request, so a periodic timer wakes the standby thread (blocked in
 * cym_park_standby) while the poll thread leaves now and then, and the
 * poll thread flags each application it finishes (cym_park_progress).
 * When a tick finds it away since the previous tick with none finished
 * meanwhile, and asleep (an application that waits: cym_park_asleep), the
 * standby polls instead until the poll thread is back and asks for its
 * place (cym_park_reclaim).  A poll thread that is not asleep is running
 * an application, or is held off the CPU by the host (a shared machine's
 * vCPU stalls for milliseconds now and then): it has the GIL and is about
 * to go on, and polling in its place would only hand its batch to workers
 * that wait for that GIL.  So the standby takes over from a running one
 * only after CYM_PARK_BUSY_TICKS ticks with none finished (an application
 * that computes for long).  A tick that finds no leave since the previous
 * one stops the timer; the next leave starts it again.
 * So a busy server's poll thread leaves and returns with no system call,
 * and an idle one is not woken.
 *
 * Every wait on the lock happens in C, where cffi has released the GIL,
 * so it cannot deadlock with the GIL.  The struct outlives the manager:
 * Python frees it (ffi.gc) once no thread can use it, and cym_mgr_free
 * detaches it first, after which every take fails and the standby
 * returns for good. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* Ticks with nothing finished before the standby polls in the place of a
 * poll thread that is not asleep. */
#define CYM_PARK_BUSY_TICKS 10

struct cym_park {
  pthread_mutex_t lock;
  pthread_cond_t back; /* the standby gave the poll back */
  int waiting;         /* the poller is inside epoll_wait */
  int vacant;          /* nobody polls: the poll thread left (cym_park_leave) */
  int standby;         /* the standby thread polls in its place */
  int want_back;       /* the poll thread is back and waits for its place */
  int closed;          /* cym_park_close or detached: the standby returns -1 */
  int timer;           /* timerfd that wakes the standby; -1: leaving is refused */
  int ticking;         /* the timer runs (periodic) */
  unsigned leaves;     /* cym_park_leave calls so far */
  unsigned seen;       /* leaves at the standby's previous tick */
  unsigned stuck;      /* ticks in a row that found it away with none finished */
  pid_t poller;        /* the thread id of the poll thread that left last */
  volatile int done;   /* the poll thread finished an application since the
                          previous tick (Python sets it, the standby clears it) */
};

/* The poller, around epoll_wait (vendor patch 0085). */
void cym_park_wait(struct mg_mgr *mgr, int waiting) {
  struct cym_mgr *m = (struct cym_mgr *) mgr->userdata;
  struct cym_park *p = m == NULL ? NULL : m->park;
  if (p == NULL) return;
  pthread_mutex_lock(&p->lock);
  p->waiting = waiting;
  pthread_mutex_unlock(&p->lock);
}

static void cym_park_detach(struct cym_mgr *m) {
  struct cym_park *p = m->park;
  if (p == NULL) return;
  pthread_mutex_lock(&p->lock);
  p->waiting = p->vacant = 0;
  p->closed = 1;
  pthread_cond_broadcast(&p->back);
  pthread_mutex_unlock(&p->lock);
  m->park = NULL;
}

/* ns between ticks, or 0 to stop. */
static int cym_park_arm(struct cym_park *p, long ns, int periodic) {
  struct itimerspec t;
  memset(&t, 0, sizeof(t));
  t.it_value.tv_sec = ns / 1000000000L;
  t.it_value.tv_nsec = ns % 1000000000L;
  if (periodic) t.it_interval = t.it_value;
  return timerfd_settime(p->timer, 0, &t, NULL);
}

/* The calling thread's id (cached: one system call per thread). */
static pid_t cym_park_tid(void) {
  static __thread pid_t tid;
  if (tid == 0) tid = (pid_t) syscall(SYS_gettid);
  return tid;
}

/* Is thread tid of this process asleep: blocked in the kernel (state S or
 * D in /proc), as an application that waits for a database, a client or a
 * lock is?  0 when it runs or is runnable, or when that cannot be read. */
static int cym_park_asleep(pid_t tid) {
  char path[64], buf[512];
  const char *end;
  ssize_t n;
  int fd;
  snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", (long) tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  end = strrchr(buf, ')'); /* after the name, which may hold ')' itself */
  return end != NULL && end[1] == ' ' && (end[2] == 'S' || end[2] == 'D');
}

/* Between polls, on the thread that polls m.  NULL without memory. */
struct cym_park *cym_park_new(struct cym_mgr *m) {
  struct cym_park *p = (struct cym_park *) calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->back, NULL);
  p->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  cym_park_detach(m);
  m->park = p;
  return p;
}

void cym_park_free(struct cym_park *p) {
  if (p->timer >= 0) close(p->timer);
  pthread_cond_destroy(&p->back);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* Any thread: 1, holding the poll thread's place, when it waits in
 * epoll_wait or has left (then call cym_park_give); 0 when it does not. */
int cym_park_take(struct cym_park *p) {
  pthread_mutex_lock(&p->lock);
  if (p->waiting || p->vacant) return 1;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

void cym_park_give(struct cym_park *p) { pthread_mutex_unlock(&p->lock); }

/* The holder of the place: write c's queued output to its socket first
 * (cym_send_now, loop.c; none when c is NULL), then give the place back.
 * One call where a whole response ends, which always does both.  Returns
 * cym_send_now's answer (1: a poll is still needed), 0 without c. */
int cym_park_give_sending(struct cym_park *p, struct mg_connection *c) {
  int again = c != NULL && cym_send_now(c);
  pthread_mutex_unlock(&p->lock);
  return again;
}

/* The poll thread, between polls: 1 when it has left the place vacant to
 * run applications, the standby to poll after one to two ticks of ms with
 * none finished; 0 when it may not (closed, or no timer), and has not left. */
int cym_park_leave(struct cym_park *p, int ms) {
  int ok;
  if (p->timer < 0 || ms <= 0) return 0;
  pthread_mutex_lock(&p->lock);
  ok = !p->closed;
  if (ok && !p->ticking) {
    ok = cym_park_arm(p, (long) ms * 1000000L, 1) == 0;
    p->ticking = ok;
  }
  if (ok) {
    p->vacant = 1;
    p->done = 0;
    p->leaves++;
    p->poller = cym_park_tid();
  }
  pthread_mutex_unlock(&p->lock);
  return ok;
}

/* The flag the poll thread sets to 1 after each application it runs while
 * away (a plain store from Python; the standby reads it under the lock). */
volatile int *cym_park_progress(struct cym_park *p) { return &p->done; }

/* The poll thread, back: 0 when the place was still vacant (it is its own
 * again); 1 when the standby polls in it: wake that poll, then
 * cym_park_reclaim. */
int cym_park_return(struct cym_park *p) {
  int taken;
  pthread_mutex_lock(&p->lock);
  taken = !p->vacant;
  p->vacant = 0;
  if (taken) p->want_back = 1;
  pthread_mutex_unlock(&p->lock);
  return taken;
}

/* The poll thread: wait until the standby has given the poll back. */
void cym_park_reclaim(struct cym_park *p) {
  pthread_mutex_lock(&p->lock);
  while (p->standby) pthread_cond_wait(&p->back, &p->lock);
  p->want_back = 0;
  pthread_mutex_unlock(&p->lock);
}

/* The standby thread: wait until the poll thread has been away too long;
 * 1 when it is the poller now (poll, then cym_park_standby_done after each
 * poll), -1 when closed. */
int cym_park_standby(struct cym_park *p) {
  for (;;) {
    uint64_t n;
    if (read(p->timer, &n, sizeof(n)) < 0 && errno != EINTR && errno != EAGAIN) return -1;
    pthread_mutex_lock(&p->lock);
    if (p->closed) {
      pthread_mutex_unlock(&p->lock);
      return -1;
    }
    if (p->vacant && p->leaves == p->seen && !p->done) {
      /* Away since the last tick, and nothing finished.  /proc is read
       * without the lock: a poll thread waiting for it would read as
       * asleep.  What it did meanwhile is checked again after. */
      unsigned leaves = p->leaves;
      pid_t poller = p->poller;
      int take = ++p->stuck >= CYM_PARK_BUSY_TICKS;
      pthread_mutex_unlock(&p->lock);
      if (!take) take = cym_park_asleep(poller);
      pthread_mutex_lock(&p->lock);
      if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return -1;
      }
      if (take && p->vacant && p->leaves == leaves && !p->done) {
        p->vacant = 0;
        p->standby = 1;
        p->stuck = 0;
        pthread_mutex_unlock(&p->lock);
        return 1;
      }
      /* An application finished, or the poll thread came back, while the
       * lock was free: that was progress (the done flag is cleared below). */
      if (p->done || p->leaves != leaves) p->stuck = 0;
    } else {
      p->stuck = 0;
    }
    if (!p->vacant && p->leaves == p->seen) {
      cym_park_arm(p, 0, 0); /* no leave for a whole tick: stop */
      p->ticking = 0;
    }
    p->seen = p->leaves;
    p->done = 0;
    pthread_mutex_unlock(&p->lock);
  }
}

/* The standby thread, between its polls: 1 when it has given the poll
 * back (asked to, closed, or with give_up), 0 when it polls on. */
int cym_park_standby_done(struct cym_park *p, int give_up) {
  int done;
  pthread_mutex_lock(&p->lock);
  done = give_up || p->want_back || p->closed;
  if (done) {
    p->standby = 0;
    pthread_cond_broadcast(&p->back);
  }
  pthread_mutex_unlock(&p->lock);
  return done;
}

/* Any thread: the standby returns -1 from now on. */
void cym_park_close(struct cym_park *p) {
  pthread_mutex_lock(&p->lock);
  p->closed = 1;
  p->vacant = 0;
  if (p->timer >= 0) cym_park_arm(p, 1, 0);
  p->ticking = 1; /* no leave may restart it */
  pthread_mutex_unlock(&p->lock);
}
