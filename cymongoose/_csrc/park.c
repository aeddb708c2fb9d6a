/* A worker thread writes a whole response while the poll thread waits.
 *
 * A WSGI worker that finished a response used to queue it for the poll
 * thread and ring the doorbell: the poll thread woke up, ran the flush in
 * Python, and went back to epoll_wait, per request.  Mongoose's poll
 * thread touches no connection while it waits in epoll_wait (vendor patch
 * 0085 calls cym_park_wait around it), so during the wait a worker may take
 * its place: cym_park_take succeeds only then, and the poll thread, back
 * from epoll_wait, waits in cym_park_wait until that worker calls
 * cym_park_give.  Everything the worker does in between runs as if on the
 * poll thread (it must fire no event).  Every wait on the lock happens in
 * C, where cffi has released the GIL, so it cannot deadlock with the GIL.
 *
 * The struct outlives the manager: Python frees it (ffi.gc) once no thread
 * can use it, and cym_mgr_free detaches it first, after which every take
 * fails. */

#include <pthread.h>

struct cym_park {
  pthread_mutex_t lock;
  int waiting; /* the poll thread is inside epoll_wait; under lock */
};

/* Poll thread, around epoll_wait (vendor patch 0085). */
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
  p->waiting = 0;
  pthread_mutex_unlock(&p->lock);
  m->park = NULL;
}

/* Between polls, on the thread that polls m.  NULL without memory. */
struct cym_park *cym_park_new(struct cym_mgr *m) {
  struct cym_park *p = (struct cym_park *) calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  pthread_mutex_init(&p->lock, NULL);
  cym_park_detach(m);
  m->park = p;
  return p;
}

void cym_park_free(struct cym_park *p) {
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* Any thread: 1, holding the poll thread's place, when it waits in
 * epoll_wait (then call cym_park_give); 0 when it does not. */
int cym_park_take(struct cym_park *p) {
  pthread_mutex_lock(&p->lock);
  if (p->waiting) return 1;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

void cym_park_give(struct cym_park *p) { pthread_mutex_unlock(&p->lock); }
