/* MqttBroker's delivery engine (cymongoose/broker.py, _broker_session.py).
 *
 * Python decides (CONNECT, authentication, ACLs, subscriptions, routes,
 * retained messages, wills, bridges, persistence); C carries the
 * per-message work that follows from those decisions, so that a steady
 * stream of messages does not cross into Python:
 *
 *   - Session delivery.  While a session's client is connected, its QoS
 *     1/2 messages in flight (packet id, message, PUBREC seen) and those
 *     queued behind the in-flight window live here, in a `cym_bsess` hung
 *     on the connection.  PUBACK, PUBREC and PUBCOMP for them are handled
 *     where the parser finds them: they free the window and send the next
 *     queued message, with no event.  When the connection ends, Python
 *     takes the records back (cym_bsess_item) for the next connection.
 *   - Cached routes.  After Python has routed a QoS 0/1 PUBLISH, it may
 *     leave the route here (cym_broker_route): the topic, every receiving
 *     session with its QoS and, with an ACL, the publishers allowed to send
 *     there.  Later PUBLISH packets on that topic from those publishers go
 *     straight to the sessions (the publisher's PUBACK has gone out in
 *     cym_mqtt_react already).  Python offers a route only when C can do all
 *     the work (no retain flag, no bridge wanting the topic, every receiver
 *     connected) and clears the cache whenever any of that may change.
 *
 * The broker struct hangs on the listener's pfn_data, which accepted
 * connections inherit, and carries the packet size limit too.  This file
 * follows mqtt.c in the one C unit and uses its helpers. */

/* One held message, as Python reads it back (cym_bsess_item). */
struct cym_bitem {
  unsigned pid;
  int flags; /* QoS << 1 | RETAIN */
  int released;
  const char *topic;
  size_t topic_len;
  const char *data;
  size_t data_len;
};

struct cym_bmsg { /* one message, shared by the sessions holding it */
  uint32_t refs, topic_len, data_len;
  char buf[]; /* topic, then payload */
};

struct cym_bslot {
  struct cym_bmsg *m; /* NULL: a hole left by an acknowledged message */
  uint16_t pid;
  uint8_t flags;    /* QoS << 1 | RETAIN, as in PUBLISH's fixed header */
  uint8_t released; /* PUBREC seen: PUBREL sent, PUBCOMP awaited */
};

struct cym_bsess {
  struct mg_connection *c; /* NULL once the connection closed */
  /* in flight, in sending order, in win[first..n) (with holes) */
  struct cym_bslot *win;
  uint32_t first, n, cap, live;
  /* waiting behind the window: a ring of qcap, qlen used from qhead */
  struct cym_bslot *q;
  uint32_t qhead, qlen, qcap;
  uint32_t max_inflight, max_queued;
  uint16_t next_pid;
  uint64_t sent, dropped;
};

struct cym_btarget {
  struct cym_bsess *s;
  uint8_t qos;
};

struct cym_route {
  struct cym_route *next;
  uint64_t hash;
  struct cym_btarget *t;
  size_t nt;
  unsigned long *writers; /* with an ACL: ids of connections allowed to publish */
  size_t nw, wcap;
  size_t topic_len;
  char topic[];
};

struct cym_broker {
  size_t max_packet; /* 0: Mongoose's receive-buffer limit only */
  int acl;           /* publishers must be listed in the route */
  uint64_t received; /* PUBLISH packets routed here */
  struct cym_route **buckets;
  size_t nbuckets, count;
};

#define CYM_ROUTES_MAX 10000 /* beyond this the cache starts over */
#define CYM_WRITERS_MAX 1024 /* publishers listed per route; more take Python */

static struct cym_broker *cym_broker_of(struct mg_connection *c) {
  return (struct cym_broker *) c->pfn_data;
}

static size_t cym_broker_max_packet(struct mg_connection *c) {
  struct cym_broker *b = cym_broker_of(c);
  return b != NULL ? b->max_packet : 0;
}

/* -- messages ---------------------------------------------------------------- */

static struct cym_bmsg *cym_bmsg_new(const char *topic, size_t tl,
                                     const char *data, size_t dl) {
  struct cym_bmsg *m;
  if (tl > 0xFFFF || dl > UINT32_MAX - tl) return NULL;
  m = (struct cym_bmsg *) malloc(sizeof(*m) + tl + dl);
  if (m == NULL) return NULL;
  m->refs = 0;
  m->topic_len = (uint32_t) tl;
  m->data_len = (uint32_t) dl;
  memcpy(m->buf, topic, tl);
  if (dl) memcpy(m->buf + tl, data, dl);
  return m;
}

static void cym_bmsg_unref(struct cym_bmsg *m) {
  if (--m->refs == 0) free(m);
}

static bool cym_bsess_open(const struct cym_bsess *s) {
  return s->c != NULL && !s->c->is_closing;
}

/* PUBLISH (flags: DUP, QoS, RETAIN) framed straight into the send buffer
 * in one piece, as cym_mqtt_publish frames it in four. */
static void cym_bsess_publish(struct mg_connection *c, const char *topic,
                              size_t tl, const char *data, size_t dl,
                              unsigned flags, uint16_t pid) {
  uint8_t head[5];
  size_t n = 0, at = c->send.len;
  size_t len = 2 + tl + ((flags & 6) ? 2 : 0) + (c->is_mqtt5 ? 1 : 0) + dl, v = len;
  uint8_t *p;
  if (len > 268435455) return; /* beyond MQTT's remaining length */
  head[n++] = (uint8_t) ((MQTT_CMD_PUBLISH << 4) | (flags & 0x0F));
  do {
    head[n] = (uint8_t) (v & 0x7F);
    v >>= 7;
    if (v) head[n] |= 0x80;
    n++;
  } while (v);
  if (mg_iobuf_add(&c->send, at, NULL, n + len) != n + len) return; /* out of memory */
  p = c->send.buf + at;
  memcpy(p, head, n), p += n;
  *p++ = (uint8_t) (tl >> 8), *p++ = (uint8_t) (tl & 0xFF);
  memcpy(p, topic, tl), p += tl;
  if (flags & 6) *p++ = (uint8_t) (pid >> 8), *p++ = (uint8_t) (pid & 0xFF);
  if (c->is_mqtt5) *p++ = 0; /* no properties */
  if (dl) memcpy(p, data, dl);
}

static void cym_bsess_write(struct cym_bsess *s, const struct cym_bslot *e,
                            int dup) {
  if (!cym_bsess_open(s)) return;
  cym_bsess_publish(s->c, e->m->buf, e->m->topic_len, e->m->buf + e->m->topic_len,
                    e->m->data_len, e->flags | (dup ? 8u : 0u), e->pid);
  s->sent++;
}

/* -- the in-flight window --------------------------------------------------- */

static bool cym_bsess_pid_used(const struct cym_bsess *s, uint16_t pid) {
  uint32_t i;
  for (i = s->first; i < s->n; i++)
    if (s->win[i].m != NULL && s->win[i].pid == pid) return true;
  return false;
}

/* A free slot at the window's end: holes are squeezed out before it grows. */
static struct cym_bslot *cym_bsess_slot(struct cym_bsess *s) {
  if (s->n == s->cap) {
    uint32_t i, j = 0;
    for (i = s->first; i < s->n; i++)
      if (s->win[i].m != NULL) s->win[j++] = s->win[i];
    s->first = 0;
    s->n = j;
  }
  if (s->n == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 8;
    struct cym_bslot *w =
        (struct cym_bslot *) realloc(s->win, cap * sizeof(*w));
    if (w == NULL) return NULL;
    s->win = w;
    s->cap = cap;
  }
  return &s->win[s->n++];
}

/* Into the window under a new packet id, and out on the wire. */
static bool cym_bsess_send_new(struct cym_bsess *s, struct cym_bmsg *m,
                               uint8_t flags) {
  struct cym_bslot *e;
  uint16_t pid = s->next_pid;
  do {
    pid = (uint16_t) (pid % 0xFFFF + 1); /* 1..65535, skipping ids in use */
  } while (s->live != 0 && cym_bsess_pid_used(s, pid));
  e = cym_bsess_slot(s);
  if (e == NULL) return false;
  s->next_pid = pid;
  e->m = m;
  e->pid = pid;
  e->flags = flags;
  e->released = 0;
  m->refs++;
  s->live++;
  cym_bsess_write(s, e, 0);
  return true;
}

static bool cym_bsess_enqueue(struct cym_bsess *s, struct cym_bmsg *m,
                              uint8_t flags) {
  struct cym_bslot *e;
  if (s->qlen >= s->max_queued) return false;
  if (s->qlen == s->qcap) {
    uint32_t cap = s->qcap ? s->qcap * 2 : 8, i;
    struct cym_bslot *q = (struct cym_bslot *) malloc(cap * sizeof(*q));
    if (q == NULL) return false;
    for (i = 0; i < s->qlen; i++) q[i] = s->q[(s->qhead + i) % s->qcap];
    free(s->q);
    s->q = q;
    s->qcap = cap;
    s->qhead = 0;
  }
  e = &s->q[(s->qhead + s->qlen) % s->qcap];
  e->m = m;
  e->flags = flags;
  e->pid = 0;
  e->released = 0;
  m->refs++;
  s->qlen++;
  return true;
}

/* Queued messages into the window while it has room. */
static void cym_bsess_pump(struct cym_bsess *s) {
  while (s->c != NULL && s->qlen != 0 && s->live < s->max_inflight) {
    struct cym_bslot e = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    if (!cym_bsess_send_new(s, e.m, e.flags)) s->dropped++;
    cym_bmsg_unref(e.m);
  }
}

/* One message for this session: QoS 0 goes out now or never; QoS 1/2 into
 * the window, or behind it (a full queue drops it, the newest one, as
 * mosquitto does).  `*shared` is the message made for an earlier receiver
 * of the same publish, or NULL. */
static void cym_bsess_put(struct cym_bsess *s, const char *topic, size_t tl,
                          const char *data, size_t dl, int qos, int retain,
                          struct cym_bmsg **shared) {
  uint8_t flags = (uint8_t) ((qos << 1) | (retain ? 1 : 0));
  bool ok;
  if (qos == 0) {
    if (cym_bsess_open(s)) {
      cym_bsess_publish(s->c, topic, tl, data, dl, flags, 0);
      s->sent++;
    }
    return;
  }
  if (*shared == NULL) *shared = cym_bmsg_new(topic, tl, data, dl);
  if (*shared == NULL) {
    s->dropped++;
    return;
  }
  if (s->c == NULL || s->live >= s->max_inflight || s->qlen != 0) {
    ok = cym_bsess_enqueue(s, *shared, flags);
  } else {
    ok = cym_bsess_send_new(s, *shared, flags);
  }
  if (!ok) s->dropped++;
}

/* PUBACK (4), PUBREC (5) or PUBCOMP (7) from the client; other ids are
 * ignored. */
static void cym_bsess_ack(struct cym_bsess *s, int cmd, uint16_t pid) {
  uint32_t i;
  for (i = s->first; i < s->n; i++) {
    struct cym_bslot *e = &s->win[i];
    if (e->m == NULL || e->pid != pid) continue;
    if (cmd == MQTT_CMD_PUBREC) {
      e->released = 1; /* cym_mqtt_react has answered with PUBREL */
      return;
    }
    if (cmd == MQTT_CMD_PUBCOMP && !e->released) return; /* PUBREC first */
    if (cmd == MQTT_CMD_PUBACK && (e->flags >> 1) != 1) return;
    cym_bmsg_unref(e->m);
    e->m = NULL;
    s->live--;
    while (s->first < s->n && s->win[s->first].m == NULL) s->first++;
    if (s->first == s->n) s->first = s->n = 0;
    cym_bsess_pump(s);
    return;
  }
}

/* -- routes ------------------------------------------------------------------- */

static uint64_t cym_topic_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (uint8_t) p[i]) * 1099511628211ULL;
  return h;
}

static struct cym_route *cym_route_find(const struct cym_broker *b,
                                        const char *topic, size_t n,
                                        uint64_t h) {
  struct cym_route *r;
  if (b->count == 0) return NULL;
  for (r = b->buckets[h & (b->nbuckets - 1)]; r != NULL; r = r->next)
    if (r->hash == h && r->topic_len == n && memcmp(r->topic, topic, n) == 0)
      return r;
  return NULL;
}

static bool cym_route_writer(const struct cym_route *r, unsigned long id) {
  size_t i;
  for (i = 0; i < r->nw; i++)
    if (r->writers[i] == id) return true;
  return false;
}

static bool cym_broker_grow(struct cym_broker *b) {
  size_t n = b->nbuckets ? b->nbuckets * 2 : 64, i;
  struct cym_route **nb = (struct cym_route **) calloc(n, sizeof(*nb));
  if (nb == NULL) return false;
  for (i = 0; i < b->nbuckets; i++) {
    struct cym_route *r = b->buckets[i], *next;
    for (; r != NULL; r = next) {
      next = r->next;
      r->next = nb[r->hash & (n - 1)];
      nb[r->hash & (n - 1)] = r;
    }
  }
  free(b->buckets);
  b->buckets = nb;
  b->nbuckets = n;
  return true;
}

/* A PUBLISH on a cached route, or an answer to one of our deliveries: done
 * here, and the event never reaches Python. */
static bool cym_broker_took(struct mg_connection *c, struct cym_bsess *s,
                            struct mg_mqtt_message *mm) {
  struct cym_broker *b;
  struct cym_route *r;
  struct cym_bmsg *shared = NULL;
  size_t i;
  switch (mm->cmd) {
    case MQTT_CMD_PUBACK:
    case MQTT_CMD_PUBREC:
    case MQTT_CMD_PUBCOMP:
      /* flags other than 0: Python closes the connection (cym_mqtt_fields) */
      if (cym_mqtt_malformed(mm)) return false;
      cym_bsess_ack(s, mm->cmd, mm->id);
      return true;
    case MQTT_CMD_PUBLISH: break;
    default: return false;
  }
  b = cym_broker_of(c);
  if (b == NULL || b->count == 0 || mm->qos > 1 || (mm->dgram.buf[0] & 1) ||
      cym_mqtt_malformed(mm))
    return false;
  r = cym_route_find(b, mm->topic.buf, mm->topic.len,
                     cym_topic_hash(mm->topic.buf, mm->topic.len));
  if (r == NULL || (b->acl && !cym_route_writer(r, c->id))) return false;
  b->received++;
  for (i = 0; i < r->nt; i++) {
    int q = r->t[i].qos < mm->qos ? r->t[i].qos : mm->qos;
    cym_bsess_put(r->t[i].s, mm->topic.buf, mm->topic.len, mm->data.buf,
                  mm->data.len, q, 0, &shared);
  }
  if (shared != NULL && shared->refs == 0) free(shared);
  return true;
}

/* The connection is going: nothing more is written for the session, which
 * stays whole until Python takes its records (cym_bsess_free). */
static void cym_broker_closed(struct mg_connection *c, struct cym_bsess *s) {
  s->c = NULL;
  cym_mqtt_state(c)->bsess = NULL;
}

/* -- what Python calls ------------------------------------------------------ */

struct cym_broker *cym_broker_new(struct mg_connection *lsn, size_t max_packet,
                                  int acl) {
  struct cym_broker *b = (struct cym_broker *) calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  b->max_packet = max_packet;
  b->acl = acl;
  lsn->pfn_data = b;
  return b;
}

void cym_broker_routes_clear(struct cym_broker *b) {
  size_t i;
  if (b->count == 0) return;
  for (i = 0; i < b->nbuckets; i++) {
    struct cym_route *r = b->buckets[i], *next;
    for (; r != NULL; r = next) {
      next = r->next;
      free(r->t);
      free(r->writers);
      free(r);
    }
    b->buckets[i] = NULL;
  }
  b->count = 0;
}

void cym_broker_free(struct cym_broker *b) {
  cym_broker_routes_clear(b);
  free(b->buckets);
  free(b);
}

uint64_t cym_broker_received(struct cym_broker *b) { return b->received; }

/* Leave a route here: `topic`'s receivers and their QoS (every one
 * attached), and, with an ACL, one more connection allowed to publish on
 * it.  0, or CYM_E_NOMEM. */
int cym_broker_route(struct cym_broker *b, const char *topic, size_t n,
                     struct cym_bsess **sess, const uint8_t *qos, size_t nt,
                     struct mg_connection *writer) {
  uint64_t h = cym_topic_hash(topic, n);
  struct cym_route *r = cym_route_find(b, topic, n, h);
  if (r == NULL) {
    size_t i;
    if (b->count >= CYM_ROUTES_MAX) cym_broker_routes_clear(b);
    if (b->count >= b->nbuckets && !cym_broker_grow(b)) return CYM_E_NOMEM;
    r = (struct cym_route *) calloc(1, sizeof(*r) + n);
    if (r == NULL) return CYM_E_NOMEM;
    r->t = (struct cym_btarget *) malloc((nt ? nt : 1) * sizeof(*r->t));
    if (r->t == NULL) {
      free(r);
      return CYM_E_NOMEM;
    }
    for (i = 0; i < nt; i++) r->t[i].s = sess[i], r->t[i].qos = qos[i];
    r->nt = nt;
    r->hash = h;
    r->topic_len = n;
    memcpy(r->topic, topic, n);
    r->next = b->buckets[h & (b->nbuckets - 1)];
    b->buckets[h & (b->nbuckets - 1)] = r;
    b->count++;
  }
  if (b->acl && !cym_route_writer(r, writer->id) && r->nw < CYM_WRITERS_MAX) {
    if (r->nw == r->wcap) {
      size_t cap = r->wcap ? r->wcap * 2 : 4;
      unsigned long *w =
          (unsigned long *) realloc(r->writers, cap * sizeof(*w));
      if (w == NULL) return CYM_E_NOMEM;
      r->writers = w;
      r->wcap = cap;
    }
    r->writers[r->nw++] = writer->id;
  }
  return 0;
}

/* Hang a session on an accepted connection past CONNECT; NULL when out of
 * memory, or when the connection is closing or has one already. */
struct cym_bsess *cym_bsess_attach(struct mg_connection *c,
                                   unsigned max_inflight, unsigned max_queued,
                                   unsigned next_pid) {
  struct cym_bsess *s;
  if (c->pfn != cym_mqtt_cb || !c->is_accepted || c->is_closing ||
      cym_mqtt_state(c)->bsess != NULL)
    return NULL;
  s = (struct cym_bsess *) calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->c = c;
  s->max_inflight = max_inflight < 0xFFFF ? max_inflight : 0xFFFF;
  s->max_queued = max_queued;
  s->next_pid = (uint16_t) next_pid;
  cym_mqtt_state(c)->bsess = s;
  return s;
}

/* A message the session had in flight on an earlier connection: back into
 * the window under its packet id, and resent (DUP), or its PUBREL resent.
 * 0, or CYM_E_NOMEM. */
int cym_bsess_resume(struct cym_bsess *s, unsigned pid, const char *topic,
                     size_t tl, const char *data, size_t dl, int flags,
                     int released) {
  struct cym_bmsg *m = cym_bmsg_new(topic, tl, data, dl);
  struct cym_bslot *e = m != NULL ? cym_bsess_slot(s) : NULL;
  if (e == NULL) {
    free(m);
    return CYM_E_NOMEM;
  }
  e->m = m;
  e->pid = (uint16_t) pid;
  e->flags = (uint8_t) (flags & 7);
  e->released = released != 0;
  m->refs = 1;
  s->live++;
  if (!released) {
    cym_bsess_write(s, e, 1);
  } else if (cym_bsess_open(s)) {
    cym_mqtt_ack(s->c, MQTT_CMD_PUBREL, 2, (uint16_t) pid);
  }
  return 0;
}

void cym_bsess_deliver(struct cym_bsess *s, const char *topic, size_t tl,
                       const char *data, size_t dl, int qos, int retain) {
  struct cym_bmsg *shared = NULL;
  cym_bsess_put(s, topic, tl, data, dl, qos, retain, &shared);
  if (shared != NULL && shared->refs == 0) free(shared);
}

/* sent, dropped, in flight, queued, last packet id */
void cym_bsess_stats(struct cym_bsess *s, uint64_t out[5]) {
  out[0] = s->sent;
  out[1] = s->dropped;
  out[2] = s->live;
  out[3] = s->qlen;
  out[4] = s->next_pid;
}

/* The i-th message held: in flight first (sending order), then queued.
 * 0 when there is none. */
int cym_bsess_item(struct cym_bsess *s, size_t i, struct cym_bitem *out) {
  const struct cym_bslot *e = NULL;
  if (i < s->live) {
    uint32_t k;
    for (k = s->first; k < s->n; k++) {
      if (s->win[k].m != NULL && i-- == 0) {
        e = &s->win[k];
        break;
      }
    }
  } else if (i - s->live < s->qlen) {
    e = &s->q[(s->qhead + (i - s->live)) % s->qcap];
  }
  if (e == NULL) return 0;
  out->pid = e->pid;
  out->flags = e->flags;
  out->released = e->released;
  out->topic = e->m->buf;
  out->topic_len = e->m->topic_len;
  out->data = e->m->buf + e->m->topic_len;
  out->data_len = e->m->data_len;
  return 1;
}

/* Forget the session's records (Python has taken them) and unhook it from
 * its connection, if that is still open. */
void cym_bsess_free(struct cym_bsess *s) {
  uint32_t i;
  if (s->c != NULL) cym_mqtt_state(s->c)->bsess = NULL;
  for (i = s->first; i < s->n; i++)
    if (s->win[i].m != NULL) cym_bmsg_unref(s->win[i].m);
  for (i = 0; i < s->qlen; i++) cym_bmsg_unref(s->q[(s->qhead + i) % s->qcap].m);
  free(s->win);
  free(s->q);
  free(s);
}
