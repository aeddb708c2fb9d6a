/* Per-listener limits (cymongoose/limits.py): request body and header
 * sizes, the time to send a request's headers, the keep-alive idle time,
 * simultaneous connections and the WebSocket message size.
 *
 * A listener with limits owns a slot in cym_lim[]; its number sits in bits
 * 24..31 of c->fn_data (CYM_LIM_MASK, core.c), which Mongoose copies to
 * every accepted child.  cym_ev calls cym_limits_ev only when those bits are
 * set, so connections without limits pay one test per event.  A slot lives
 * while its listener or any counted child does (the count doubles as the
 * connection count of max_connections).  Slot CYM_LIM_REFUSED marks a
 * child refused by max_connections: it holds no slot and is not counted.
 *
 * HTTP children keep their state at the start of c->data, the protocol
 * scratch space: plain HTTP has no other user of those bytes (static file
 * serving uses the end), and from the WebSocket upgrade on ws.c owns them,
 * so nothing here touches c->data once c->is_websocket is set.
 *
 * A limit hit queues the status response with "Connection: close", stops
 * the HTTP parser, reports MG_EV_ERROR and then lingers: input is read and
 * discarded and our side is shut down once the response is flushed, until
 * the peer closes or CYM_LIM_LINGER_MS pass.  Closing at once would make
 * the kernel answer the unread request bytes with a reset, and the client
 * would often lose the response. */

#include <pthread.h>

#define CYM_LIM_SHIFT 24
#define CYM_LIM_REFUSED 255u
#define CYM_LIM_NSLOTS 255 /* slots 1..254; 0 means none */
#define CYM_LIM_LINGER_MS 2000
#define CYM_LIM_NONE (-1)  /* an unlimited size or count */
#define CYM_LIM_TICK_MS 50 /* how often MG_EV_POLL looks at phases and timers */

#define CYM_LOG_DEBUG 10
#define CYM_LOG_INFO 20
#define CYM_LOG_WARNING 30

static void _cym_limits_log(int level, const char *line);

struct cym_limits {
  int64_t max_body, max_head, max_conns, max_ws; /* CYM_LIM_NONE: unlimited */
  uint64_t head_ms, idle_ms;                     /* 0: no timeout */
  uint32_t count; /* accepted children alive, refused ones aside */
  uint8_t used, listening, http;
};

static struct cym_limits cym_lim[CYM_LIM_NSLOTS];
static pthread_mutex_t cym_lim_lock = PTHREAD_MUTEX_INITIALIZER;

/* Phases of an HTTP child */
enum {
  CYM_LP_HEAD = 1, /* waiting for a request's head (header_timeout) */
  CYM_LP_BODY,     /* head done, body arriving */
  CYM_LP_RESP,     /* the application is answering */
  CYM_LP_IDLE,     /* keep-alive, no request yet (idle_timeout) */
  CYM_LP_LINGER    /* a limit was hit: draining, then closing */
};

struct cym_lim_conn {
  uint64_t deadline; /* of the current phase; 0: none */
  uint32_t need;     /* receive bytes the current request needs (HTTP_HDRS) */
  uint8_t phase;
  uint8_t chunked;
  uint8_t shut;      /* LINGER: our side is shut down */
  uint8_t last;      /* CYM_LAST_*: the connection ends after this request */
  uint8_t head;      /* the request under way had its HTTP_HDRS, and neither
                        its HTTP_MSG nor a takeover of its body came yet:
                        http_cb parses its head again on every read until
                        the body is in, and each time fires HTTP_HDRS (a
                        handler that detaches http_cb gets none after) */
};

/* The end of c->data holds the length of a static file being sent
 * (static.c, and Mongoose's own static_cb). */
typedef char cym_lim_fits[sizeof(struct cym_lim_conn) <= MG_DATA_SIZE - sizeof(size_t) ? 1 : -1];

/* st->last: the request under way ends the connection ("Connection: close",
 * or HTTP/1.0 without keep-alive), and then whether another one followed it.
 * Nothing after such a request reaches the application (RFC 9112 9.6). */
enum { CYM_LAST_NO = 0, CYM_LAST_THIS, CYM_LAST_AFTER };

static struct cym_lim_conn *cym_lim_of(struct mg_connection *c) {
  return (struct cym_lim_conn *) (void *) c->data;
}

static unsigned cym_lim_slot(struct mg_connection *c) {
  return (unsigned) (((uintptr_t) c->fn_data & CYM_LIM_MASK) >> CYM_LIM_SHIFT);
}

static void cym_lim_set_slot(struct mg_connection *c, unsigned slot) {
  c->fn_data = (void *) (((uintptr_t) c->fn_data & ~CYM_LIM_MASK) |
                         ((uintptr_t) slot << CYM_LIM_SHIFT));
}

static void cym_lim_release(unsigned slot) {
  struct cym_limits *l = &cym_lim[slot];
  if (l->listening || l->count > 0) return;
  pthread_mutex_lock(&cym_lim_lock);
  l->used = 0;
  pthread_mutex_unlock(&cym_lim_lock);
}

/* One log line with the peer's address, through the "cymongoose" logger. */
static void cym_lim_log(struct mg_connection *c, int level, const char *what) {
  char line[200];
  mg_snprintf(line, sizeof(line), "%s: peer %M, connection %lu", what,
              mg_print_ip_port, &c->rem, c->id);
  cym_python_ran();
  _cym_limits_log(level, line);
}

/* Ends an HTTP child for a limit: `status` (0 for none), then linger. */
static void cym_lim_reject(struct mg_connection *c, int status,
                           const char *why) {
  struct cym_lim_conn *st = cym_lim_of(c);
  if (status != 0 && !c->is_draining && !c->is_closing) {
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
              "Content-Length: %d\r\nConnection: close\r\n\r\n%s\n",
              status, mg_http_status_code_str(status), (int) strlen(why) + 1,
              why);
  }
  c->recv.len = 0; /* http_cb sees the buffer change and detaches */
  c->pfn = NULL;
  c->pfn_data = NULL;
  c->is_resp = 0;
  st->phase = CYM_LP_LINGER;
  st->deadline = mg_millis() + CYM_LIM_LINGER_MS;
  st->shut = 0;
  cym_lim_log(c, CYM_LOG_WARNING, why);
  mg_call(c, MG_EV_ERROR, (void *) why);
}

/* Closes an HTTP child that sent nothing in time: no response owed. */
static void cym_lim_drop(struct mg_connection *c, const char *why) {
  cym_lim_log(c, CYM_LOG_DEBUG, why);
  c->is_closing = 1;
}

/* Events of a child being refused or lingering: only OPEN, CLOSE and
 * MG_EV_ERROR reach the application. */
static int cym_lim_linger(struct mg_connection *c, int ev, void *ev_data) {
  struct cym_lim_conn *st = cym_lim_of(c);
  if (ev == MG_EV_OPEN || ev == MG_EV_CLOSE || ev == MG_EV_ERROR) return 0;
  if (c->is_closing) return 1;
  if (ev == MG_EV_READ) c->recv.len = 0;
  if (ev == MG_EV_POLL) {
    uint64_t now = *(uint64_t *) ev_data;
    if (!st->shut && c->send.len == 0) {
      st->shut = 1;
      if (c->is_tls) {
        c->is_draining = 1; /* no half-close under TLS */
      } else {
        shutdown(FD(c), SHUT_WR); /* the peer sees the end of the response */
      }
    }
    if (now >= st->deadline) c->is_closing = 1;
  }
  return 1;
}

/* MG_EV_OPEN of an accepted child: count it, or refuse it. */
static int cym_lim_open(struct mg_connection *c, unsigned slot) {
  struct cym_limits *l = &cym_lim[slot];
  struct cym_lim_conn *st = cym_lim_of(c);
  if (l->max_conns != CYM_LIM_NONE && (int64_t) l->count >= l->max_conns) {
    cym_lim_set_slot(c, CYM_LIM_REFUSED);
    if (l->http && !c->is_tls) {
      /* an HTTP client gets a status it can act on, not a reset */
      memset(st, 0, sizeof(*st));
      mg_printf(c,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                "text/plain\r\nContent-Length: 28\r\nRetry-After: 1\r\n"
                "Connection: close\r\n\r\ntoo many connections (503)\r\n");
      c->pfn = NULL;
      c->pfn_data = NULL;
      st->phase = CYM_LP_LINGER;
      st->deadline = mg_millis() + CYM_LIM_LINGER_MS;
      cym_lim_log(c, CYM_LOG_WARNING,
                  "connection limit reached, answered 503");
    } else {
      c->is_closing = 1;
      cym_lim_log(c, CYM_LOG_WARNING, "connection limit reached, refused");
    }
    return 0;
  }
  l->count++;
  if (l->http) {
    memset(st, 0, sizeof(*st));
    st->phase = CYM_LP_HEAD;
    st->deadline = l->head_ms ? mg_millis() + l->head_ms : 0;
  }
  return 0;
}

/* True when the comma-separated list `v` holds `token` (any case). */
static int cym_lim_has_token(struct mg_str v, const char *token) {
  struct mg_str t = mg_str(token), item;
  while (mg_span(v, &item, &v, ',')) {
    while (item.len > 0 && (item.buf[0] == ' ' || item.buf[0] == '\t'))
      item.buf++, item.len--;
    while (item.len > 0 &&
           (item.buf[item.len - 1] == ' ' || item.buf[item.len - 1] == '\t'))
      item.len--;
    if (mg_strcasecmp(item, t) == 0) return 1;
  }
  return 0;
}

/* Whether this request is the connection's last (RFC 9112 section 9.3). */
static int cym_lim_is_last(struct mg_http_message *hm) {
  struct mg_str *cc = mg_http_get_header(hm, "Connection");
  if (cc != NULL && cym_lim_has_token(*cc, "close")) return 1;
  if (mg_strcasecmp(hm->proto, mg_str("HTTP/1.0")) == 0)
    return cc == NULL || !cym_lim_has_token(*cc, "keep-alive");
  return 0;
}

/* Header lines of a complete head: Mongoose keeps the first
 * MG_MAX_HTTP_HEADERS and would silently ignore the rest. */
static size_t cym_lim_header_lines(const struct mg_http_message *hm) {
  size_t i, n = 0;
  for (i = 0; i < hm->head.len; i++) n += hm->head.buf[i] == '\n';
  return n >= 2 ? n - 2 : 0; /* less the request line and the blank line */
}

/* MG_EV_HTTP_HDRS: the head is complete (and within max_header_size when
 * it came in one read); check the declared body. */
static int cym_lim_head(struct mg_connection *c, struct cym_limits *l,
                        struct cym_lim_conn *st, struct mg_http_message *hm) {
  size_t start = (size_t) (hm->head.buf - (char *) c->recv.buf);
  struct mg_str *te = mg_http_get_header(hm, "Transfer-Encoding");
  if (st->head) return 0; /* the same request again, checked already */
  if (st->last != CYM_LAST_NO) {
    /* A request after the last one: dropped unseen, and so is the rest
     * (http_cb sees the buffer change and detaches). */
    st->last = CYM_LAST_AFTER;
    c->recv.len = 0;
    return 1;
  }
  if ((l->max_head != CYM_LIM_NONE && hm->head.len > (uint64_t) l->max_head) ||
      cym_lim_header_lines(hm) > MG_MAX_HTTP_HEADERS) {
    cym_lim_reject(c, 431, "HTTP request header too large (431)");
    return 1;
  }
  st->last = (uint8_t) cym_lim_is_last(hm);
  st->head = 1;
  st->phase = CYM_LP_BODY;
  st->deadline = 0;
  st->chunked = te != NULL;
  st->need = (uint32_t) (start + hm->head.len);
  if (te == NULL && mg_http_get_header(hm, "Content-Length") != NULL) {
    uint64_t len = hm->body.len;
    if (l->max_body != CYM_LIM_NONE && len > (uint64_t) l->max_body) {
      cym_lim_reject(c, 413, "HTTP request body too large (413)");
      return 1;
    }
    st->need = len > 0xFFFFFFFFu - st->need ? 0xFFFFFFFFu
                                              : (uint32_t) (st->need + len);
  }
  return 0;
}

/* MG_EV_READ, after http_cb has parsed what it could. */
static int cym_lim_read(struct mg_connection *c, struct cym_limits *l,
                        struct cym_lim_conn *st, long n) {
  if (st->last == CYM_LAST_AFTER || (st->last && c->is_draining)) {
    c->recv.len = 0; /* input after the last request: read and dropped */
    return 1;
  }
  if (c->pfn != http_cb || c->is_resp) return 0; /* body taken over, busy */
  /* A head http_cb cannot parse: it empties the buffer and sets is_draining
   * (its only use of that flag) to close without a word.  With no request
   * under way (HEAD or IDLE; n > 0 rules out the empty READ that
   * mg_mgr_poll fires after a response) answer 400 and report it like a
   * limit instead, so the client and the application both learn why. */
  if (n > 0 && c->is_draining && c->recv.len == 0 &&
      (st->phase == CYM_LP_HEAD || st->phase == CYM_LP_IDLE)) {
    c->is_draining = 0;
    cym_lim_reject(c, 400, "HTTP request malformed (400)");
    return 1;
  }
  if (st->phase == CYM_LP_IDLE && c->recv.len > 0) {
    st->phase = CYM_LP_HEAD; /* the next request started */
    st->deadline = l->head_ms ? mg_millis() + l->head_ms : 0;
  }
  if (st->phase == CYM_LP_HEAD) {
    size_t n = c->recv.len;
    if ((l->max_head != CYM_LIM_NONE && n > (uint64_t) l->max_head &&
         mg_http_get_request_len(c->recv.buf, (size_t) l->max_head) == 0) ||
        n >= MG_MAX_RECV_SIZE) {
      cym_lim_reject(c, 431, "HTTP request header too large (431)");
      return 1;
    }
  } else if (st->phase == CYM_LP_BODY) {
    /* Mongoose buffers a body whole and drops the connection once the
     * buffer reaches MG_MAX_RECV_SIZE: answer 413 before that.  A chunked
     * body is counted with its framing. */
    if ((st->chunked && l->max_body != CYM_LIM_NONE &&
         c->recv.len > st->need + (uint64_t) l->max_body) ||
        st->need > MG_MAX_RECV_SIZE || c->recv.len >= MG_MAX_RECV_SIZE) {
      cym_lim_reject(c, 413, "HTTP request body too large (413)");
      return 1;
    }
  }
  return 0;
}

/* MG_EV_POLL: phase changes that no event announces, and timeouts. */
static int cym_lim_poll(struct mg_connection *c, struct cym_limits *l,
                        struct cym_lim_conn *st, uint64_t now) {
  if (c->is_draining || c->is_closing) return 0;
  if (st->phase == CYM_LP_BODY && c->is_resp) st->phase = CYM_LP_RESP;
  if (st->last && st->phase == CYM_LP_RESP && !c->is_resp) {
    c->is_draining = 1; /* the last response is written: close once flushed */
    return 0;
  }
  if (st->phase == CYM_LP_RESP) {
    if (c->is_resp || c->send.len > 0 || c->pfn != http_cb) return 0;
    if (c->recv.len > 0) {
      st->phase = CYM_LP_HEAD;
      st->deadline = l->head_ms ? now + l->head_ms : 0;
    } else {
      st->phase = CYM_LP_IDLE;
      st->deadline = l->idle_ms ? now + l->idle_ms : 0;
    }
    return 0;
  }
  if (st->deadline == 0 || now < st->deadline) return 0;
  if (st->phase == CYM_LP_IDLE) {
    cym_lim_drop(c, "keep-alive connection idle, closed");
  } else if (st->phase == CYM_LP_HEAD) {
    if (c->recv.len == 0) {
      cym_lim_drop(c, "no request within header_timeout, closed");
    } else {
      cym_lim_reject(c, 408, "HTTP request header timeout (408)");
    }
  }
  return 0;
}

/* True on the poll that looks at phases and timers, one every
 * CYM_LIM_TICK_MS rather than every poll, so that an idle connection
 * costs little more than Mongoose's own walk.  Every MG_EV_POLL of one
 * mg_mgr_poll carries the same time, which marks that poll. */
static int cym_limits_tick(struct cym_mgr *m, uint64_t now) {
  if (now == m->lim_tick) return 1;
  if (now < m->lim_next) return 0;
  m->lim_tick = now;
  m->lim_next = now + CYM_LIM_TICK_MS;
  return 1;
}

/* True when cym_limits_ev has nothing to do with c's MG_EV_POLL outside
 * that poll.  Refused and lingering children are never skipped: their
 * events must not reach the application. */
static int cym_limits_idle_conn(struct mg_connection *c) {
  return cym_lim_slot(c) != CYM_LIM_REFUSED &&
         (c->is_listening || c->is_websocket || cym_lim_of(c)->phase != CYM_LP_LINGER);
}

/* True for an MG_EV_POLL that cym_limits_ev may skip (cym_ev inlines this
 * test). */
static int cym_limits_idle_poll(struct cym_mgr *m, struct mg_connection *c,
                                uint64_t now) {
  return !cym_limits_tick(m, now) && cym_limits_idle_conn(c);
}

/* The hook of cym_ev: returns non-zero when the event must not reach the
 * application. */
int cym_limits_ev(struct mg_connection *c, int ev, void *ev_data) {
  unsigned slot = cym_lim_slot(c);
  struct cym_limits *l;
  struct cym_lim_conn *st;
  if (slot == CYM_LIM_REFUSED) {
    if (ev == MG_EV_OPEN || ev == MG_EV_CLOSE) return 0;
    return c->is_closing ? 1 : cym_lim_linger(c, ev, ev_data);
  }
  l = &cym_lim[slot];
  if (c->is_listening) {
    if (ev == MG_EV_CLOSE) {
      l->listening = 0;
      cym_lim_release(slot);
    }
    return 0;
  }
  if (ev == MG_EV_OPEN) return cym_lim_open(c, slot);
  if (ev == MG_EV_CLOSE) { /* refused children carry CYM_LIM_REFUSED */
    if (l->count > 0) l->count--;
    cym_lim_release(slot);
    return 0;
  }
  if (!l->http || c->is_websocket) return 0;
  st = cym_lim_of(c);
  if (st->phase == CYM_LP_LINGER) return cym_lim_linger(c, ev, ev_data);
  switch (ev) {
    case MG_EV_POLL: return cym_lim_poll(c, l, st, *(uint64_t *) ev_data);
    case MG_EV_READ: return cym_lim_read(c, l, st, *(long *) ev_data);
    case MG_EV_HTTP_HDRS:
      return cym_lim_head(c, l, st, (struct mg_http_message *) ev_data);
    case MG_EV_HTTP_MSG:
      st->phase = CYM_LP_RESP;
      st->head = 0;
      return 0;
    default: return 0;
  }
}

/* c's state when it is an HTTP child with limits (not refused, not yet a
 * WebSocket, which owns c->data then); else NULL. */
static struct cym_lim_conn *cym_lim_http_child(struct mg_connection *c) {
  unsigned slot = cym_lim_slot(c);
  if (slot == 0 || slot == CYM_LIM_REFUSED || c->is_listening || c->is_websocket ||
      !cym_lim[slot].http)
    return NULL;
  return cym_lim_of(c);
}

/* The servers took over the body of the request under way
 * (cym_adapters_take_body): http_cb parses nothing until it is read, and
 * the next HTTP_HDRS is the next request's. */
static void cym_limits_body_taken(struct mg_connection *c) {
  struct cym_lim_conn *st = cym_lim_http_child(c);
  if (st != NULL) st->head = 0;
}

/* Whether the request being answered on c is its last: reply() then says
 * "Connection: close" (core.c). */
int cym_limits_last(struct mg_connection *c) {
  struct cym_lim_conn *st = cym_lim_http_child(c);
  return st != NULL && st->last != CYM_LAST_NO;
}

/* ---- calls from Python and ws.c ------------------------------------------ */

/* Gives listener c a slot with these limits (sizes and counts: -1 for
 * none; times in ms: 0 for none).  Returns the slot; CYM_E_NO_SLOT when
 * all are in use, CYM_E_STATE when c already has limits. */
int cym_limits_attach(struct mg_connection *c, int http, int64_t max_body,
                      int64_t max_head, uint64_t head_ms, uint64_t idle_ms,
                      int64_t max_conns, int64_t max_ws) {
  unsigned slot;
  struct cym_limits *l = NULL;
  if (cym_lim_slot(c) != 0) return CYM_E_STATE;
  pthread_mutex_lock(&cym_lim_lock);
  for (slot = 1; slot < CYM_LIM_NSLOTS; slot++) {
    if (!cym_lim[slot].used) {
      l = &cym_lim[slot];
      memset(l, 0, sizeof(*l));
      l->used = 1;
      break;
    }
  }
  pthread_mutex_unlock(&cym_lim_lock);
  if (l == NULL) return CYM_E_NO_SLOT;
  l->http = http ? 1 : 0;
  l->listening = 1;
  l->max_body = max_body, l->max_head = max_head, l->max_conns = max_conns;
  l->max_ws = max_ws, l->head_ms = head_ms, l->idle_ms = idle_ms;
  cym_lim_set_slot(c, slot);
  return (int) slot;
}

/* How many accepted connections of listener c are counted now. */
long cym_limits_count(struct mg_connection *c) {
  unsigned slot = cym_lim_slot(c);
  if (slot == 0 || slot == CYM_LIM_REFUSED) return -1;
  return (long) cym_lim[slot].count;
}

/* Largest WebSocket message (payload bytes) connection c may receive;
 * -1 for none of ours.  Called by ws.c. */
static int64_t cym_limits_ws_max(struct mg_connection *c) {
  unsigned slot = cym_lim_slot(c);
  if (slot == 0 || slot == CYM_LIM_REFUSED) return CYM_LIM_NONE;
  return cym_lim[slot].max_ws;
}
