/* Cross-thread wakeups that never lose a payload.
 *
 * Mongoose's mg_wakeup sends each payload as one datagram through its
 * socketpair: a payload larger than the socket buffer, or one sent while
 * the buffer is full, is silently dropped.  Here payloads wait in a
 * mutex-protected FIFO instead, and the socketpair only carries a small
 * "doorbell" datagram that interrupts the poll.  At most one doorbell is in
 * flight (`rung`), so the socket buffer never fills.  The poll thread
 * drains the FIFO inside mg_mgr_poll (on the pipe connection's MG_EV_POLL
 * and MG_EV_READ) and delivers each payload with mg_call(MG_EV_WAKEUP), the
 * path Mongoose itself uses, so it reaches Python through cym_ev. */

#include <pthread.h>


struct cym_wake_msg {
  struct cym_wake_msg *next;
  unsigned long id;
  size_t len;
  char data[];
};

struct cym_wake {
  pthread_mutex_t lock;
  struct cym_wake_msg *head, *tail; /* under lock */
  int rung;                         /* a doorbell is in flight; under lock */
  int closed;                       /* under lock */
  MG_SOCKET_TYPE fd;                /* sending end of the socketpair */
  unsigned long pipe_id;
  struct mg_connection *pipe;       /* poll thread only */
};

static void cym_wake_free_list(struct cym_wake_msg *m) {
  while (m != NULL) {
    struct cym_wake_msg *next = m->next;
    free(m);
    m = next;
  }
}

/* Poll thread: deliver everything queued so far, in order.  Handlers may
 * queue more meanwhile (the lock is not held while they run); that rings
 * the doorbell again, so it is delivered by the next poll. */
static void cym_wake_drain(struct cym_wake *w, struct mg_mgr *mgr) {
  struct cym_wake_msg *m, *next;
  struct cym_mgr *cm = (struct cym_mgr *) mgr->userdata;
  pthread_mutex_lock(&w->lock);
  m = w->head;
  w->head = w->tail = NULL;
  w->rung = 0;
  pthread_mutex_unlock(&w->lock);
  for (; m != NULL; m = next) {
    /* O(1) per payload (conn_index.c).  The index holds only connections
     * not yet closed, so a payload for one that closed since it was sent
     * finds nothing and is dropped. */
    struct mg_connection *t =
        cm == NULL ? NULL : cym_index_get(&cm->index, mgr, m->id);
    next = m->next;
    if (t != NULL && t != w->pipe) {
      struct mg_str data = mg_str_n(m->data, m->len);
      mg_call(t, MG_EV_WAKEUP, &data);
    }
    free(m);
  }
}

static void cym_wufn(struct mg_connection *c, int ev, void *ev_data) {
  struct cym_wake *w = (struct cym_wake *) c->fn_data;
  if (w != NULL && (ev == MG_EV_POLL || ev == MG_EV_READ) &&
      (__atomic_load_n(&w->head, __ATOMIC_ACQUIRE) != NULL ||
       __atomic_load_n(&w->rung, __ATOMIC_ACQUIRE))) {
    cym_wake_drain(w, c->mgr);
  }
  if (w != NULL && ev == MG_EV_CLOSE) {
    /* The pipe is going away (manager closing, or a socket error): refuse
     * further payloads instead of queueing them for nobody. */
    pthread_mutex_lock(&w->lock);
    w->closed = 1;
    cym_wake_free_list(w->head);
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    w->pipe = NULL;
    c->fn_data = NULL;
  }
  /* Mongoose's handler consumes doorbells (and raw mg_wakeup datagrams,
   * which it still delivers) and closes the other end on MG_EV_CLOSE. */
  wufn(c, ev, ev_data);
}

/* hidden: the pipe takes no connection id (ids stay 1, 2, ... for the
 * application's connections); it gets the largest id instead. */
struct cym_wake *cym_wake_init(struct cym_mgr *m, int hidden) {
  struct cym_wake *w;
  struct mg_connection *c;
  if (!mg_wakeup_init(&m->mgr)) return NULL;
  for (c = m->mgr.conns; c != NULL && c->fn != wufn; c = c->next) (void) 0;
  if (c == NULL) return NULL;
  if (hidden && c->id == m->mgr.nextid) {
    m->mgr.nextid--;
    c->id = (unsigned long) -1;
  }
  w = (struct cym_wake *) calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  pthread_mutex_init(&w->lock, NULL);
  w->fd = m->mgr.pipe.fd;
  w->pipe_id = c->id;
  w->pipe = c;
  c->fn_data = w;
  c->fn = cym_wufn;
  return w;
}

unsigned long cym_wake_pipe_id(struct cym_wake *w) { return w->pipe_id; }

/* Under w->lock.  The payload is linked in before the doorbell goes out:
 * the poll thread may read the doorbell the moment it is sent, and must
 * then find the payload. */
static int cym_wake_ring(struct cym_wake *w) {
  if (w->rung) return 1;
  __atomic_store_n(&w->rung, 1, __ATOMIC_RELEASE);
  if (send(w->fd, (const char *) &w->pipe_id, sizeof(w->pipe_id),
           MSG_DONTWAIT) != (long) sizeof(w->pipe_id)) {
    w->rung = 0;
    return 0;
  }
  return 1;
}

/* Any thread.  Queues a copy of buf for connection `id` (or, for the pipe's
 * own id, only interrupts the poll) and rings the doorbell if needed. */
int cym_wake_push(struct cym_wake *w, unsigned long id, const char *buf,
                  size_t len) {
  struct cym_wake_msg *m = NULL, *prev_tail;
  int rc = CYM_OK;
  if (id != w->pipe_id) {
    if (len > (size_t) -1 - sizeof(*m)) return CYM_E_NOMEM;
    m = (struct cym_wake_msg *) malloc(sizeof(*m) + len);
    if (m == NULL) return CYM_E_NOMEM;
    m->next = NULL;
    m->id = id;
    m->len = len;
    if (len > 0) memcpy(m->data, buf, len);
  }
  pthread_mutex_lock(&w->lock);
  prev_tail = w->tail;
  if (w->closed) {
    rc = CYM_E_CLOSED;
  } else {
    if (m != NULL) {
      if (prev_tail != NULL) prev_tail->next = m;
      else __atomic_store_n(&w->head, m, __ATOMIC_RELEASE);
      w->tail = m;
    }
    if (!cym_wake_ring(w)) {
      rc = CYM_E_SIGNAL;
      if (m != NULL) { /* unlink it again: the caller gets an error instead */
        if (prev_tail != NULL) prev_tail->next = NULL;
        else w->head = NULL;
        w->tail = prev_tail;
      }
    } else {
      m = NULL; /* queued */
    }
  }
  pthread_mutex_unlock(&w->lock);
  free(m); /* not queued */
  return rc;
}

/* Manager closing, before mg_mgr_free: refuse further payloads, drop the
 * undelivered ones and detach from the pipe connection. */
void cym_wake_close(struct cym_wake *w) {
  struct cym_wake_msg *m;
  pthread_mutex_lock(&w->lock);
  w->closed = 1;
  m = w->head;
  w->head = w->tail = NULL;
  pthread_mutex_unlock(&w->lock);
  cym_wake_free_list(m);
  if (w->pipe != NULL) w->pipe->fn_data = NULL;
  w->pipe = NULL;
}

/* Called when the last Python reference to the cdata is gone, so no thread
 * can be inside cym_wake_push. */
void cym_wake_free(struct cym_wake *w) {
  cym_wake_free_list(w->head);
  pthread_mutex_destroy(&w->lock);
  free(w);
}
