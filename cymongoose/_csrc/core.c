/* The core of the shim: one event trampoline for every connection, the
 * manager wrapper, and calls that fuse several Mongoose steps into one
 * crossing.  It is compiled in the same unit as mongoose.c (see
 * build_ffi.py), so it may use Mongoose's static helpers. */

/* Which events Python wants lives in c->fn_data, which Mongoose copies from
 * a listener to each accepted child:
 *   bits 0..23   one bit per event; bit 23 stands for MG_EV_USER and above
 *   bits 32..63  for a listener with its own handler: its id, so that a child
 *                can find the handler it inherits */
#define CYM_EV_ALL ((uintptr_t) 0xFFFFFF)
#define CYM_LSN_SHIFT 32
/*   bits 24..31  a listener's limits slot, inherited by its children
 *                (limits.c); never touched by cym_set_state */
#define CYM_LIM_MASK ((uintptr_t) 0xFF000000)
/* Events that hand the application a peer's data.  (MQTT_CMD stays: Mongoose
 * reports the packet that made it close, a refused CONNACK, after closing.) */
#define CYM_DATA_EVENTS                                                   \
  ((1u << MG_EV_READ) | (1u << MG_EV_HTTP_HDRS) | (1u << MG_EV_HTTP_MSG) | \
   (1u << MG_EV_WS_MSG) | (1u << MG_EV_MQTT_MSG))
int cym_limits_ev(struct mg_connection *c, int ev, void *ev_data);
int cym_limits_last(struct mg_connection *c);

/* Events delivered per poll: WebSocket messages, and the MG_EV_POLL of a
 * connection with nothing to read or write in this poll.  A message for
 * Python of at most CYM_BATCH_MAX bytes is copied into the manager's batch
 * instead of crossing at once, and such a POLL is recorded there; the
 * whole batch crosses as one event, CYM_EV_BATCH, before any other
 * crossing, before ws.c closes or fails a connection, and once the poll
 * has read every connection (vendor patch 0082), so Python still sees
 * events in the order Mongoose raised them, and handlers' output still
 * leaves in the poll's write burst.  In that last case, inside
 * cym_mgr_poll, it does not cross but is handed to cym_mgr_poll's caller,
 * which delivers it and then has cym_mgr_poll_end write the burst (vendor
 * patch 0086, cym_hand_off).  One exception: a batch of POLLs alone
 * does not go before the events of a connection with I/O in this poll
 * (whose own POLL crossed at once), so idle connections' POLLs may reach
 * Python after other connections' later events.  On CPython a crossing
 * costs more than a 32-byte echo's whole handler, or than an idle
 * connection's POLL handler (bench/README.md).  Each record is a struct
 * cym_batch_rec followed by its payload: a message's bytes, or for a run
 * of POLLs (flags CYM_BATCH_POLLS) the ids of their connections, 8 bytes
 * each. */
#define CYM_EV_BATCH (-0x10000)
#define CYM_BATCH_MAX 4096
#define CYM_BATCH_KEEP (256 * 1024) /* delivered at this size; larger is freed after */
/* No batch is longer: it is delivered once it reaches CYM_BATCH_KEEP, and one
 * record adds at most CYM_BATCH_MAX bytes of payload to a shorter one. */
#define CYM_BATCH_SPAN (CYM_BATCH_KEEP + CYM_BATCH_REC + CYM_BATCH_MAX)
#define CYM_BATCH_POLLS 0xFFFFFFFFu /* a message's flags are its first byte */
struct cym_batch_rec {
  uint64_t id;
  uint32_t flags;
  uint32_t len;
};
#define CYM_BATCH_REC ((int) sizeof(struct cym_batch_rec))
struct cym_batch {
  char *buf;
  size_t len, size;
  size_t run; /* 1 + offset of the last record while it is a run of POLLs, else 0 */
  int msgs;   /* it holds a message */
};

struct cym_mgr {
  struct mg_mgr mgr;
  int live; /* set once Python registered the manager in slot */
  struct mg_connection *cur;
  unsigned slot;
  uint64_t lim_tick; /* limits.c: the `now` of the poll that checks timers */
  uint64_t lim_next; /* limits.c: when the next poll does */
  int hdrs_bodies_only; /* MG_EV_HTTP_HDRS only for requests with a body */
  struct cym_conn_index index; /* conn_index.c */
  int iobuf_sweep;             /* conn_iobufs.c: this poll frees idle buffers */
  size_t iobuf_freed;          /* bytes it freed */
  uint64_t iobuf_next;         /* when the next such poll is due */
  struct cym_batch batch;      /* WebSocket messages and POLLs not yet delivered */
  /* cym_hand_off: the batch cym_mgr_poll hands to Python, until
   * cym_mgr_poll_end; handed is its address for Python (0 when none) */
  struct cym_batch out;
  uintptr_t handed;
  int hand_off;       /* cym_mgr_poll runs mg_mgr_poll: a batch may be handed off */
  bool out_queued;    /* mg_mgr_poll's `queued` for the burst cym_mgr_poll_end runs */
  struct cym_mgr *outer; /* cym_polling before the poll that handed a batch off */
  int busy; /* this poll ran the shim's handlers or Python (cym_burst_needed) */
  struct cym_park *park; /* park.c: NULL unless a worker may write during waits */
};

static void cym_park_detach(struct cym_mgr *m);

/* The manager this thread is polling, NULL outside cym_mgr_poll: Python
 * that runs outside any event (a log line) marks it busy. */
static __thread struct cym_mgr *cym_polling;
static void cym_python_ran(void) {
  if (cym_polling != NULL) cym_polling->busy = 1;
}

static int cym_limits_idle_poll(struct cym_mgr *m, struct mg_connection *c,
                                uint64_t now);
static int cym_limits_tick(struct cym_mgr *m, uint64_t now);
static int cym_limits_idle_conn(struct mg_connection *c);

static void _cym_dispatch(unsigned slot, unsigned long id, int ev, uintptr_t arg);

/* At MG_EV_HTTP_HDRS the body may not have arrived yet, though Mongoose's
 * body.len (and message.len) already count all of Content-Length: hand
 * Python a copy cut to the bytes actually received, so reading it never
 * runs past the receive buffer.  Per thread, as managers may poll on
 * several; the handler is done with it before the next HDRS can fire. */
static uintptr_t cym_hdrs_arg(struct mg_connection *c, struct mg_http_message *hm) {
  static __thread struct mg_http_message cut;
  const char *end = (const char *) c->recv.buf + c->recv.len;
  cut = *hm;
  if (cut.body.buf >= (const char *) c->recv.buf && cut.body.buf <= end &&
      cut.body.len > (size_t) (end - cut.body.buf)) {
    cut.body.len = (size_t) (end - cut.body.buf);
    cut.message.len = (size_t) (end - cut.message.buf);
  }
  return (uintptr_t) &cut;
}

/* What crosses into Python as `arg`: integers by value, structs by address,
 * nothing for events whose data the API does not expose. */
static uintptr_t cym_arg(struct mg_connection *c, int ev, void *ev_data) {
  switch (ev) {
    case MG_EV_OPEN: return (uintptr_t) c->fn_data;
    case MG_EV_POLL: case MG_EV_READ: case MG_EV_WRITE: return 0;
    case MG_EV_HTTP_HDRS: return cym_hdrs_arg(c, (struct mg_http_message *) ev_data);
    case MG_EV_MQTT_OPEN:
      return ev_data == NULL ? 0 : (uintptr_t) (unsigned) *(int *) ev_data;
    case MG_EV_SNTP_TIME:
      return ev_data == NULL ? 0 : (uintptr_t) *(uint64_t *) ev_data;
    default: return (uintptr_t) ev_data;
  }
}

/* When a server hangs up mid-body, Mongoose's close path hands out the
 * response cut short as if complete (it means this for bodies that end at
 * close).  True when a Content-Length says more was due: the handler never
 * sees it.  (Server connections parse nothing at close: vendor patch 0060.) */
static bool cym_truncated(struct mg_connection *c, struct mg_http_message *hm) {
  struct mg_str *cl = mg_http_get_header(hm, "Content-Length");
  size_t want = 0;
  if (cl == NULL || !mg_to_size_t(*cl, &want) || hm->body.len >= want) return false;
  MG_ERROR(("%lu request body cut short by close: %lu of %lu bytes", c->id,
            (unsigned long) hm->body.len, (unsigned long) want));
  return true;
}

/* True when a request announces a body (a Transfer-Encoding, or a
 * Content-Length other than 0). */
static bool cym_has_body(struct mg_http_message *hm) {
  struct mg_str *cl;
  if (mg_http_get_header(hm, "Transfer-Encoding") != NULL) return true;
  cl = mg_http_get_header(hm, "Content-Length");
  return cl != NULL && !(cl->len == 1 && cl->buf[0] == '0');
}

/* Room for `more` bytes at the batch's end; false when out of memory (the
 * event then crosses on its own). */
static bool cym_batch_room(struct cym_batch *b, size_t more) {
  size_t need = b->len + more;
  if (need > b->size) {
    size_t size = b->size ? b->size : 4096;
    char *p;
    while (size < need) size *= 2;
    if ((p = (char *) realloc(b->buf, size)) == NULL) return false;
    b->buf = p, b->size = size;
  }
  return true;
}

/* Appends a record and its payload. */
static bool cym_batch_put(struct cym_batch *b, uint64_t id, uint32_t flags,
                          const void *payload, size_t len) {
  struct cym_batch_rec rec;
  if (!cym_batch_room(b, sizeof(rec) + len)) return false;
  rec.id = id;
  rec.flags = flags;
  rec.len = (uint32_t) len;
  memcpy(b->buf + b->len, &rec, sizeof(rec));
  if (len > 0) memcpy(b->buf + b->len + sizeof(rec), payload, len);
  b->len += sizeof(rec) + len;
  return true;
}

/* Appends a message (copied) to the batch. */
static bool cym_batch_add_msg(struct cym_batch *b, struct mg_connection *c,
                              struct mg_ws_message *wm) {
  if (!cym_batch_put(b, (uint64_t) c->id, wm->flags, wm->data.buf, wm->data.len)) return false;
  b->run = 0;
  b->msgs = 1;
  return true;
}

/* Appends c's POLL: its id joins the run of POLLs the batch ends with, or
 * starts one. */
static bool cym_batch_add_poll(struct cym_batch *b, struct mg_connection *c) {
  uint64_t id = (uint64_t) c->id;
  struct cym_batch_rec rec;
  if (b->run == 0) {
    size_t at = b->len;
    if (!cym_batch_put(b, 0, CYM_BATCH_POLLS, &id, sizeof(id))) return false;
    b->run = at + 1;
    return true;
  }
  if (!cym_batch_room(b, sizeof(id))) return false;
  memcpy(b->buf + b->len, &id, sizeof(id));
  b->len += sizeof(id);
  memcpy(&rec, b->buf + b->run - 1, sizeof(rec)); /* the run's record counts it */
  rec.len += (uint32_t) sizeof(id);
  memcpy(b->buf + b->run - 1, &rec, sizeof(rec));
  return true;
}

/* Whether c reads or writes in this poll (mg_iotest set these before any
 * MG_EV_POLL): more of its events follow its POLL. */
static bool cym_has_io(const struct mg_connection *c) {
  return c->is_readable || c->is_writable;
}

/* A delivered batch's memory: kept for the next poll's batch unless events
 * meanwhile started another one, or it grew large. */
static void cym_batch_done(struct cym_mgr *m, struct cym_batch b) {
  if (m->batch.buf == NULL && b.size <= CYM_BATCH_KEEP) {
    b.len = b.run = 0;
    b.msgs = 0;
    m->batch = b;
  } else {
    free(b.buf);
  }
}

/* Delivers the batch: one crossing whose arg is the records' address and
 * whose id is their length.  Handlers may raise events meanwhile, which
 * start a new batch. */
static void cym_batch_flush(struct cym_mgr *m) {
  struct cym_batch b = m->batch;
  struct mg_connection *prev = m->cur;
  if (b.len == 0) return;
  memset(&m->batch, 0, sizeof(m->batch));
  m->cur = NULL;
  _cym_dispatch(m->slot, (unsigned long) b.len, CYM_EV_BATCH, (uintptr_t) b.buf);
  m->cur = prev;
  cym_batch_done(m, b);
}

/* The batch of mgr, delivered now if it holds anything: called by vendor
 * patch 0082 once mg_mgr_poll has read every connection (before its write
 * burst), by cym_mgr_poll, and by ws.c before a connection's CLOSE echo or
 * failure, which its handlers must not see yet. */
void cym_batch_deliver(struct mg_mgr *mgr) {
  struct cym_mgr *m = (struct cym_mgr *) mgr->userdata;
  if (m != NULL && m->live && m->batch.len > 0) cym_batch_flush(m);
}

/* Vendor patch 0086, where 0082 calls cym_batch_deliver: inside cym_mgr_poll,
 * a batch is not delivered through a callback but handed to cym_mgr_poll's
 * caller (returns 1; mg_mgr_poll then returns before its write burst, which
 * cym_mgr_poll_end runs).  On CPython, returning to Python and calling C
 * again costs less than cffi's callback; it is the common case of a poll
 * that read WebSocket messages.  Elsewhere it delivers as before (0). */
int cym_hand_off(struct mg_mgr *mgr, bool queued) {
  struct cym_mgr *m = (struct cym_mgr *) mgr->userdata;
  if (m == NULL || !m->live || !m->hand_off || m->batch.len == 0) {
    cym_batch_deliver(mgr);
    return 0;
  }
  m->out = m->batch;
  memset(&m->batch, 0, sizeof(m->batch));
  m->handed = (uintptr_t) m->out.buf;
  m->out_queued = queued;
  return 1;
}

/* Vendor patch 0083: whether the shim's handlers or Python ran during this
 * poll of mgr (they may have queued output on any connection); if not, and
 * no connection kept output past its turn, mg_mgr_poll skips its write
 * burst. */
int cym_burst_needed(struct mg_mgr *mgr) {
  struct cym_mgr *m = (struct cym_mgr *) mgr->userdata;
  return m == NULL || !m->live || m->busy;
}

static void cym_ev_full(struct mg_connection *c, int ev, void *ev_data);

/* Vendor patch 0087, once a poll (and cym_ev for each MG_EV_POLL it gets):
 * 0 when cym_ev acts on this poll's MG_EV_POLL for every connection (the
 * manager is not live, or this poll frees idle buffers), else what
 * cym_ev_wants_poll needs to know of the poll: CYM_SKIP_TICK when it is
 * the one that looks at limits' timers, else CYM_SKIP. */
#define CYM_SKIP 1
#define CYM_SKIP_TICK 2
int cym_poll_skips(struct mg_mgr *mgr, uint64_t now) {
  struct cym_mgr *m = (struct cym_mgr *) mgr->userdata;
  if (m == NULL || !m->live || m->iobuf_sweep) return 0;
  return cym_limits_tick(m, now) ? CYM_SKIP_TICK : CYM_SKIP;
}

/* On a poll that skips: whether cym_ev acts on c's MG_EV_POLL (Python
 * wants it, or limits have something to do). */
static inline int cym_ev_wants_poll(struct mg_connection *c, int skips) {
  uintptr_t state = (uintptr_t) c->fn_data;
  return (state & ((uintptr_t) 1 << MG_EV_POLL)) ||
         ((state & CYM_LIM_MASK) && (skips == CYM_SKIP_TICK || !cym_limits_idle_conn(c)));
}

/* True when cym_ev has nothing to do with this MG_EV_POLL. */
static inline int cym_poll_quiet(struct mg_connection *c, uint64_t now) {
  int skips = cym_poll_skips(c->mgr, now);
  return skips && !cym_ev_wants_poll(c, skips);
}

/* The trampoline.  A quiet MG_EV_POLL returns here: Mongoose raises one per
 * connection per poll, and cym_ev_full's prologue alone cost an idle
 * connection a fifth of its time per poll. */
void cym_ev(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_POLL && cym_poll_quiet(c, *(uint64_t *) ev_data)) return;
  cym_ev_full(c, ev, ev_data);
}

static void cym_ws_cb(struct mg_connection *c, int ev, void *ev_data);
static int cym_ws_poll_quiet(struct mg_connection *c);

/* Vendor patch 0087, per connection on a poll that skips: whether a
 * handler of c acts on MG_EV_POLL.  Of the user handlers only cym_ev is
 * known to ignore it (when Python does not want it and limits have nothing
 * to do), of the protocol handlers cym_ws_cb and those mg_pfn_ignores_poll
 * names.  Inlined: mg_mgr_poll asks for every connection on every poll. */
__attribute__((always_inline)) inline int cym_poll_wanted(struct mg_connection *c, int skips) {
  if (c->pfn == cym_ws_cb ? !cym_ws_poll_quiet(c) : !mg_pfn_ignores_poll(c)) return 1;
  if (c->fn != cym_ev) return c->fn != NULL;
  return cym_ev_wants_poll(c, skips);
}

/* Everything else cym_ev does, for every event. */
static void cym_ev_full(struct mg_connection *c, int ev, void *ev_data) {
  struct cym_mgr *m = (struct cym_mgr *) c->mgr->userdata;
  uintptr_t wanted = (uintptr_t) c->fn_data &
                     ((uintptr_t) 1 << (ev < MG_EV_USER ? ev : MG_EV_USER));
  struct mg_connection *prev;
  if (m == NULL) return;
  m->busy = 1; /* any event past cym_ev's early return may queue output */
  /* The batch's messages came first: they reach Python while their
   * connection is alive and findable, before its error or close does. */
  if ((ev == MG_EV_CLOSE || ev == MG_EV_ERROR) && m->live && m->batch.len > 0)
    cym_batch_flush(m);
  if (ev == MG_EV_POLL) {
    if (m->iobuf_sweep) cym_iobufs_sweep(c, &m->iobuf_freed);
  } else if (ev == MG_EV_READ || ev == MG_EV_WRITE) {
    cym_iobufs_touch(c);
  } else if (ev == MG_EV_OPEN) {
    cym_index_add(&m->index, c);
  } else if (ev == MG_EV_CLOSE) {
    cym_index_del(&m->index, c);
  }
  if (!m->live) return;
  /* Once the application closed the connection, or an error did, data
   * still buffered must not reach it: only CLOSE (and ERROR) do. */
  if (c->is_closing && ev < MG_EV_USER && ((1u << ev) & CYM_DATA_EVENTS)) return;
  if (((uintptr_t) c->fn_data & CYM_LIM_MASK) &&
      (ev != MG_EV_POLL || !cym_limits_idle_poll(m, c, *(uint64_t *) ev_data)) &&
      cym_limits_ev(c, ev, ev_data))
    return;
  if (ev == MG_EV_HTTP_MSG && c->is_closing && cym_truncated(c, ev_data)) return;
  /* The servers take over bodies at HDRS; the head of a bodiless request
   * (most of them) need not cross twice. */
  if (ev == MG_EV_HTTP_HDRS && m->hdrs_bodies_only &&
      !cym_has_body((struct mg_http_message *) ev_data))
    return;
  /* ws.c drops a message it could not inflate (data.buf NULL) */
  if (ev == MG_EV_WS_MSG && ((struct mg_ws_message *) ev_data)->data.buf == NULL) return;
  if (!wanted) {
    /* OPEN and CLOSE cross anyway, complemented: Python keeps exactly one
     * Connection per live connection. */
    if (ev != MG_EV_OPEN && ev != MG_EV_CLOSE) return;
    ev = ~ev;
  } else if ((ev == MG_EV_WS_MSG &&
              ((struct mg_ws_message *) ev_data)->data.len <= CYM_BATCH_MAX &&
              cym_batch_add_msg(&m->batch, c, (struct mg_ws_message *) ev_data)) ||
             /* A connection with I/O in this poll has more events to come,
              * which would deliver the batch at once: its POLL crosses now. */
             (ev == MG_EV_POLL && !cym_has_io(c) && !c->is_closing &&
              cym_batch_add_poll(&m->batch, c))) {
    /* Bounded: a read of many empty frames makes 16 bytes of batch from
     * each 2-byte frame. */
    if (m->batch.len >= CYM_BATCH_KEEP) cym_batch_flush(m);
    return;
  }
  /* The batch goes first, unless it holds only POLLs and this connection
   * has I/O in this poll, so its own POLL crossed at once: then the idle
   * connections' POLLs wait for the batch's next delivery. */
  if (m->batch.len > 0 && (m->batch.msgs || !cym_has_io(c))) {
    cym_batch_flush(m);
    /* a handler in the batch may have closed this connection meanwhile */
    if (ev >= 0 && c->is_closing && ev < MG_EV_USER && ((1u << ev) & CYM_DATA_EVENTS)) return;
  }
  prev = m->cur;
  m->cur = c;
  _cym_dispatch(m->slot, c->id, ev, cym_arg(c, ev < 0 ? ~ev : ev, ev_data));
  m->cur = prev;
}

/* Views hold the address of an event's struct as an integer and read its
 * strings through these: one call each, where casting the address and
 * walking the struct's fields costs cffi several conversions. */
const char *cym_str_buf(uintptr_t s) { return ((struct mg_str *) s)->buf; }
size_t cym_str_len(uintptr_t s) { return ((struct mg_str *) s)->len; }
unsigned cym_ws_flags(uintptr_t wm) { return ((struct mg_ws_message *) wm)->flags; }

struct cym_mgr *cym_mgr_new(void) {
  struct cym_mgr *m = (struct cym_mgr *) calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  mg_mgr_init(&m->mgr);
  m->mgr.userdata = m;
  return m;
}

/* What ends every poll, after its write burst. */
static void cym_poll_done(struct cym_mgr *m, struct cym_mgr *outer) {
  cym_polling = outer;
  cym_batch_deliver(&m->mgr); /* for builds without patch 0082's call */
  if (m->iobuf_sweep) {
    m->iobuf_sweep = 0;
    cym_iobufs_trim(m->iobuf_freed);
    m->iobuf_freed = 0;
  }
}

/* mg_mgr_poll, marking one poll every CYM_IOBUF_IDLE_MS as the one that
 * frees the buffers of idle connections (conn_iobufs.c).  Returns 0 when the
 * poll is over, or the length of a batch it handed off (cym_hand_off) at
 * m->handed: the caller delivers it, then must call cym_mgr_poll_end, which
 * writes the poll's output and ends it. */
size_t cym_mgr_poll(struct cym_mgr *m, int ms) {
  uint64_t now = mg_millis();
  struct cym_mgr *outer = cym_polling;
  if (now >= m->iobuf_next) {
    m->iobuf_sweep = 1;
    m->iobuf_next = now + CYM_IOBUF_IDLE_MS;
  }
  m->busy = 0;
  cym_polling = m;
  m->hand_off = 1;
  mg_mgr_poll(&m->mgr, ms);
  m->hand_off = 0;
  if (m->handed != 0) {
    m->outer = outer;
    m->busy = 1; /* Python runs the batch's handlers before the burst */
    return m->out.len;
  }
  cym_poll_done(m, outer);
  return 0;
}

/* The rest of a poll whose batch was handed off and delivered: anything
 * its handlers added to a new batch crosses first, then the write burst. */
void cym_mgr_poll_end(struct cym_mgr *m) {
  struct cym_batch b = m->out;
  if (m->handed == 0) return;
  memset(&m->out, 0, sizeof(m->out));
  m->handed = 0;
  cym_batch_done(m, b);
  cym_batch_deliver(&m->mgr);
  mg_mgr_burst(&m->mgr, m->out_queued);
  cym_poll_done(m, m->outer);
}

void cym_mgr_hdrs_bodies_only(struct cym_mgr *m, int on) { m->hdrs_bodies_only = on; }

/* Closes every connection (their CLOSE events still reach Python), then
 * detaches Python and frees the wrapper. */
void cym_mgr_free(struct cym_mgr *m) {
  cym_park_detach(m);
  mg_mgr_free(&m->mgr);
  m->mgr.userdata = NULL;
  m->live = 0;
  cym_index_free(&m->index);
  free(m->batch.buf);
  free(m->out.buf);
  free(m);
}

enum cym_kind {
  CYM_LISTEN, CYM_CONNECT, CYM_HTTP_LISTEN, CYM_HTTP_CONNECT, CYM_WS_CONNECT,
  CYM_MQTT_LISTEN, CYM_SNTP_CONNECT
};

struct mg_connection *cym_open(struct cym_mgr *m, int kind, const char *url,
                               uintptr_t state) {
  struct mg_mgr *mgr = &m->mgr;
  void *fd = (void *) state;
  switch (kind) {
    case CYM_LISTEN: return mg_listen(mgr, url, cym_ev, fd);
    case CYM_CONNECT: return mg_connect(mgr, url, cym_ev, fd);
    case CYM_HTTP_LISTEN: return mg_http_listen(mgr, url, cym_ev, fd);
    case CYM_HTTP_CONNECT: return mg_http_connect(mgr, url, cym_ev, fd);
    case CYM_WS_CONNECT: return mg_ws_connect(mgr, url, cym_ev, fd, NULL);
    case CYM_MQTT_LISTEN: return mg_mqtt_listen(mgr, url, cym_ev, fd);
    case CYM_SNTP_CONNECT: return mg_sntp_connect(mgr, url, cym_ev, fd);
    default: return NULL;
  }
}

/* cym_open for a listener, with the options of vendor patch 0010: a listen
 * backlog (0: Mongoose's), SO_REUSEPORT, or a listening socket to adopt
 * (-1: none), which the listener then owns. */
struct mg_connection *cym_listen(struct cym_mgr *m, int kind, const char *url,
                                 uintptr_t state, int backlog, int reuse_port,
                                 int adopt_fd) {
  struct mg_connection *c;
  cym_lsn_backlog = backlog;
  cym_lsn_reuse_port = reuse_port;
  cym_lsn_adopt_fd = adopt_fd;
  c = cym_open(m, kind, url, state);
  cym_lsn_backlog = 0;
  cym_lsn_reuse_port = 0;
  cym_lsn_adopt_fd = -1;
  return c;
}

/* What a descriptor offered for adoption is, read with getsockopt alone:
 * its address family when it is a listening TCP stream socket, -1 (errno
 * set) when it is no socket, -2 when it does not listen for streams, -3 for
 * a family other than IPv4/IPv6.  Not through a Python socket object: PyPy's
 * socket(fileno=) makes the descriptor blocking, and that flag belongs to
 * the open file shared with every worker serving it, one of which could
 * then block in accept() with connections it took but did not answer. */
int cym_listening_family(int fd) {
  int type = 0, on = 0, family = 0;
  socklen_t n = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *) &type, &n) != 0) return -1;
  n = sizeof(on);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (char *) &on, &n) != 0) return -1;
  if (type != SOCK_STREAM || !on) return -2;
  n = sizeof(family);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, (char *) &family, &n) != 0) return -1;
  return family == AF_INET || family == AF_INET6 ? family : -3;
}

int cym_has_reuseport(void) {
#if defined(SO_REUSEPORT)
  return 1;
#else
  return 0;
#endif
}

uintptr_t cym_state(struct mg_connection *c) { return (uintptr_t) c->fn_data; }
void cym_set_state(struct mg_connection *c, uintptr_t state) {
  c->fn_data = (void *) ((state & ~CYM_LIM_MASK) |
                         ((uintptr_t) c->fn_data & CYM_LIM_MASK));
}

#define CYM_F_LISTENING (1u << 0)
#define CYM_F_CLIENT (1u << 1)
#define CYM_F_ACCEPTED (1u << 2)
#define CYM_F_TLS (1u << 3)
#define CYM_F_UDP (1u << 4)
#define CYM_F_WEBSOCKET (1u << 5)
#define CYM_F_READABLE (1u << 6)
#define CYM_F_WRITABLE (1u << 7)
#define CYM_F_CLOSING (1u << 8)
#define CYM_F_FULL (1u << 9)
#define CYM_F_DRAINING (1u << 10)
#define CYM_F_RESP (1u << 11)
#define CYM_F_RESOLVING (1u << 12)
#define CYM_F_CONNECTING (1u << 13)

unsigned cym_flags(struct mg_connection *c) {
  return (c->is_listening ? CYM_F_LISTENING : 0) |
         (c->is_client ? CYM_F_CLIENT : 0) |
         (c->is_accepted ? CYM_F_ACCEPTED : 0) | (c->is_tls ? CYM_F_TLS : 0) |
         (c->is_udp ? CYM_F_UDP : 0) |
         (c->is_websocket ? CYM_F_WEBSOCKET : 0) |
         (c->is_readable ? CYM_F_READABLE : 0) |
         (c->is_writable ? CYM_F_WRITABLE : 0) |
         (c->is_closing ? CYM_F_CLOSING : 0) | (c->is_full ? CYM_F_FULL : 0) |
         (c->is_draining ? CYM_F_DRAINING : 0) | (c->is_resp ? CYM_F_RESP : 0) |
         (c->is_resolving ? CYM_F_RESOLVING : 0) |
         (c->is_connecting ? CYM_F_CONNECTING : 0);
}

void cym_set_flag(struct mg_connection *c, unsigned flag, int on) {
  unsigned v = on ? 1 : 0;
  switch (flag) {
    case CYM_F_CLOSING: c->is_closing = v; break;
    case CYM_F_FULL: c->is_full = v; break;
    case CYM_F_DRAINING: c->is_draining = v; break;
    case CYM_F_RESP: c->is_resp = v; break;
    default: break;
  }
}

/* Closes a connection now, the way mg_mgr_poll does: the socket leaves the
 * poller and is closed before the struct is freed (mg_close_conn alone
 * leaves the descriptor open).  Only safe outside mg_mgr_poll. */
void cym_close_now(struct mg_connection *c) { close_conn(c); }

void cym_error(struct mg_connection *c, const char *msg) {
  mg_error(c, "%s", msg);
}

/* Decimal digits of v at p; returns the end. */
static char *cym_utoa(char *p, unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char) ('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

#define CYM_REPLY_BUF 1024

/* A whole HTTP response in one call.  Unlike mg_http_reply the body is
 * copied as bytes, never through printf: binary-safe and linear in size.
 * The head (and a small body with it) is put together with memcpy in a
 * stack buffer and queued with one mg_send: Mongoose's printf writes one
 * byte at a time through a function pointer, and cost ~2,400 instructions
 * per hello-world reply. */
/* True when the header block names a Connection header (any case). */
static int cym_has_connection(const char *headers, size_t len) {
  size_t i;
  for (i = 0; i + 11 <= len; i++) {
    if ((i == 0 || headers[i - 1] == '\n') &&
        mg_ncasecmp(headers + i, "Connection:", 11) == 0)
      return 1;
  }
  return 0;
}

void cym_reply(struct mg_connection *c, int status, const char *headers,
               size_t headers_len, const char *body, size_t body_len) {
  char buf[CYM_REPLY_BUF], *p = buf;
  const char *reason = mg_http_status_code_str(status);
  size_t reason_len = strlen(reason);
  /* The answer to a connection's last request says so (RFC 9112 9.6). */
  const char *close = cym_limits_last(c) && !cym_has_connection(headers, headers_len)
                          ? "Connection: close\r\n" : "";
  size_t close_len = strlen(close);
  /* status line (<= 9 + 11 + 1 + reason + 2), Content-Length line (<= 38) */
  size_t head_max = 23 + reason_len + headers_len + close_len + 38 + 4;
  if (head_max > sizeof(buf)) {
    mg_printf(c, "HTTP/1.1 %d %s\r\n%.*s%sContent-Length: %lu\r\n\r\n", status,
              reason, (int) headers_len, headers, close, (unsigned long) body_len);
    if (body_len > 0) mg_send(c, body, body_len);
    c->is_resp = 0;
    return;
  }
  memcpy(p, "HTTP/1.1 ", 9), p += 9;
  if (status < 0) *p++ = '-';
  p = cym_utoa(p, status < 0 ? 0UL - (unsigned long) status : (unsigned long) status);
  *p++ = ' ';
  memcpy(p, reason, reason_len), p += reason_len;
  *p++ = '\r', *p++ = '\n';
  if (headers_len > 0) memcpy(p, headers, headers_len), p += headers_len;
  if (close_len > 0) memcpy(p, close, close_len), p += close_len;
  memcpy(p, "Content-Length: ", 16), p += 16;
  p = cym_utoa(p, (unsigned long) body_len);
  memcpy(p, "\r\n\r\n", 4), p += 4;
  if (body_len > 0 && body_len <= (size_t) (buf + sizeof(buf) - p)) {
    memcpy(p, body, body_len), p += body_len;
    body_len = 0;
  }
  mg_send(c, buf, (size_t) (p - buf));
  if (body_len > 0) mg_send(c, body, body_len);
  c->is_resp = 0;
}

/* reply() with the default header block, the common case: two arguments
 * fewer for cffi to convert on every call. */
void cym_reply_text(struct mg_connection *c, int status, const char *body,
                    size_t body_len) {
  static const char text_plain[] = "Content-Type: text/plain\r\n";
  cym_reply(c, status, text_plain, sizeof(text_plain) - 1, body, body_len);
}

/* mg_http_get_var in the shim's convention: the value's length, 0 when the
 * variable is absent or empty, CYM_E_TOO_BIG when it does not fit `buf` or
 * holds a malformed %-escape (Mongoose reports both as -3). */
int cym_http_var(const struct mg_str *query, const char *name, char *buf,
                 size_t len) {
  int n = mg_http_get_var(query, name, buf, len);
  if (n == -3) return CYM_E_TOO_BIG;
  return n < 0 ? 0 : n;
}

struct mg_str cym_header_var(struct mg_http_message *hm, const char *header,
                             const char *var) {
  struct mg_str *h = mg_http_get_header(hm, header);
  if (h == NULL) return mg_str_n(NULL, 0);
  return mg_http_get_header_var(*h, mg_str(var));
}
