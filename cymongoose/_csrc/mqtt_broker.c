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
 *     the work (no bridge wanting the topic, no shared subscription group,
 *     every receiver connected and none with No Local) and clears the cache
 *     whenever any of that may change; a PUBLISH with the retain flag, a
 *     Message Expiry Interval or a bad property still takes Python.
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
  const char *props;
  size_t props_len;
  uint64_t expire_at;
};

/* One message, shared by the sessions holding it.  `props` are the MQTT 5
 * properties passed on to v5 subscribers (PUBLISH's own, less its Message
 * Expiry Interval, which goes out as what is left of it at `expire_at`). */
struct cym_bmsg {
  uint32_t refs, topic_len, props_len, data_len;
  uint64_t expire_at; /* wall-clock ms (cym_wall_ms) the message expires; 0: never */
  char buf[]; /* topic, properties, payload */
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
  uint32_t max_packet; /* the client's MQTT 5 Maximum Packet Size; 0: none */
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

/* A message's parts, borrowed from a packet or a cym_bmsg. */
struct cym_bview {
  const char *topic, *props, *data;
  size_t tl, pl, dl;
  uint64_t expire_at;
};

static uint64_t cym_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static struct cym_bmsg *cym_bmsg_new(const struct cym_bview *v) {
  struct cym_bmsg *m;
  if (v->tl > 0xFFFF || v->pl > 0xFFFFFF || v->dl > UINT32_MAX - v->tl - v->pl)
    return NULL;
  m = (struct cym_bmsg *) malloc(sizeof(*m) + v->tl + v->pl + v->dl);
  if (m == NULL) return NULL;
  m->refs = 0;
  m->topic_len = (uint32_t) v->tl;
  m->props_len = (uint32_t) v->pl;
  m->data_len = (uint32_t) v->dl;
  m->expire_at = v->expire_at;
  memcpy(m->buf, v->topic, v->tl);
  if (v->pl) memcpy(m->buf + v->tl, v->props, v->pl);
  if (v->dl) memcpy(m->buf + v->tl + v->pl, v->data, v->dl);
  return m;
}

static struct cym_bview cym_bview_of(const char *topic, size_t tl,
                                     const char *props, size_t pl,
                                     const char *data, size_t dl,
                                     uint64_t expire_at) {
  struct cym_bview v;
  v.topic = topic, v.tl = tl, v.props = props, v.pl = pl;
  v.data = data, v.dl = dl, v.expire_at = expire_at;
  return v;
}

static struct cym_bview cym_bmsg_view(const struct cym_bmsg *m) {
  const char *props = m->buf + m->topic_len;
  return cym_bview_of(m->buf, m->topic_len, props, m->props_len,
                      props + m->props_len, m->data_len, m->expire_at);
}

static void cym_bmsg_unref(struct cym_bmsg *m) {
  if (--m->refs == 0) free(m);
}

static bool cym_bsess_open(const struct cym_bsess *s) {
  return s->c != NULL && !s->c->is_closing;
}

static size_t cym_varint_len(size_t v) {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* The remaining seconds of a message's expiry interval, as the PUBLISH
 * passed on carries it (MQTT-3.3.2-6); 0 once it has run out. */
static uint32_t cym_bview_ttl(const struct cym_bview *v, uint64_t now) {
  return v->expire_at > now ? (uint32_t) ((v->expire_at - now + 999) / 1000) : 0;
}

/* The remaining length of the PUBLISH that carries `v` to this client, and
 * its property block's length (MQTT 5). */
static size_t cym_bview_rest(const struct mg_connection *c,
                             const struct cym_bview *v, unsigned flags,
                             size_t *plen) {
  *plen = c->is_mqtt5 ? v->pl + (v->expire_at ? 5 : 0) : 0;
  return 2 + v->tl + ((flags & 6) ? 2 : 0) + v->dl +
         (c->is_mqtt5 ? cym_varint_len(*plen) + *plen : 0);
}

/* Whether `v` may still go to this session's client: not expired unsent
 * (MQTT-3.3.2-5), nor over the Maximum Packet Size the client asked for
 * (MQTT-3.1.2-25: such a message is dropped as if it had been sent). */
static bool cym_bsess_may_send(const struct cym_bsess *s,
                               const struct cym_bview *v, unsigned flags) {
  size_t plen, rest;
  if (v->expire_at && v->expire_at < cym_wall_ms()) return false;
  if (s->max_packet == 0 || s->c == NULL) return true;
  rest = cym_bview_rest(s->c, v, flags, &plen);
  return 1 + cym_varint_len(rest) + rest <= s->max_packet;
}

/* PUBLISH (flags: DUP, QoS, RETAIN) framed straight into the send buffer
 * in one piece, as cym_mqtt_publish frames it in four. */
static void cym_bsess_publish(struct mg_connection *c,
                              const struct cym_bview *v, unsigned flags,
                              uint16_t pid) {
  size_t plen, rest = cym_bview_rest(c, v, flags, &plen), at = c->send.len;
  size_t size = 1 + cym_varint_len(rest) + rest, vl;
  uint8_t *p;
  if (rest > 268435455) return; /* beyond MQTT's remaining length */
  if (mg_iobuf_add(&c->send, at, NULL, size) != size) return; /* out of memory */
  p = c->send.buf + at;
  *p++ = (uint8_t) ((MQTT_CMD_PUBLISH << 4) | (flags & 0x0F));
  for (vl = rest; vl >= 128; vl >>= 7) *p++ = (uint8_t) ((vl & 0x7F) | 0x80);
  *p++ = (uint8_t) vl;
  *p++ = (uint8_t) (v->tl >> 8), *p++ = (uint8_t) (v->tl & 0xFF);
  memcpy(p, v->topic, v->tl), p += v->tl;
  if (flags & 6) *p++ = (uint8_t) (pid >> 8), *p++ = (uint8_t) (pid & 0xFF);
  if (c->is_mqtt5) {
    for (vl = plen; vl >= 128; vl >>= 7) *p++ = (uint8_t) ((vl & 0x7F) | 0x80);
    *p++ = (uint8_t) vl;
    if (v->expire_at) {
      uint32_t ttl = cym_bview_ttl(v, cym_wall_ms());
      *p++ = MQTT_PROP_MESSAGE_EXPIRY_INTERVAL;
      *p++ = (uint8_t) (ttl >> 24), *p++ = (uint8_t) (ttl >> 16);
      *p++ = (uint8_t) (ttl >> 8), *p++ = (uint8_t) ttl;
    }
    if (v->pl) memcpy(p, v->props, v->pl), p += v->pl;
  }
  if (v->dl) memcpy(p, v->data, v->dl);
}

static void cym_bsess_write(struct cym_bsess *s, const struct cym_bslot *e,
                            int dup) {
  struct cym_bview v;
  if (!cym_bsess_open(s)) return;
  v = cym_bmsg_view(e->m);
  cym_bsess_publish(s->c, &v, e->flags | (dup ? 8u : 0u), e->pid);
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
  struct cym_bview v = cym_bmsg_view(m);
  uint16_t pid = s->next_pid;
  if (!cym_bsess_may_send(s, &v, flags)) return true; /* gone as if sent */
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
static void cym_bsess_put(struct cym_bsess *s, const struct cym_bview *v,
                          int qos, int retain, struct cym_bmsg **shared) {
  uint8_t flags = (uint8_t) ((qos << 1) | (retain ? 1 : 0));
  bool ok;
  if (qos == 0) {
    if (cym_bsess_open(s) && cym_bsess_may_send(s, v, flags)) {
      cym_bsess_publish(s->c, v, flags, 0);
      s->sent++;
    }
    return;
  }
  if (*shared == NULL) *shared = cym_bmsg_new(v);
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

int cym_mqtt_props_check(const char *block, size_t n, int will, size_t cut[3]);

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
  struct cym_bview v;
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
  v = cym_bview_of(mm->topic.buf, mm->topic.len, mm->dgram.buf + mm->props_start,
                   mm->props_size, mm->data.buf, mm->data.len, 0);
  if (v.pl != 0) {
    /* passed on as they are; a bad one, or an expiry, takes Python */
    size_t cut[3];
    if (cym_mqtt_props_check(v.props, v.pl, 0, cut) != 0 || cut[0] != v.pl)
      return false;
  }
  b->received++;
  for (i = 0; i < r->nt; i++) {
    int q = r->t[i].qos < mm->qos ? r->t[i].qos : mm->qos;
    cym_bsess_put(r->t[i].s, &v, q, 0, &shared);
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

/* -- MQTT 5 message properties ------------------------------------------------ */

static bool cym_utf8_feed(uint32_t *state, const uint8_t *p, size_t n,
                          const uint8_t *mask); /* ws.c */

/* A UTF-8 string or binary field at p (its 2-byte length first) within end;
 * its length in *len, or false when it runs short or (text) is not UTF-8. */
static bool cym_prop_field(const uint8_t *p, const uint8_t *end, bool text,
                           size_t *len) {
  uint32_t st = 0;
  if (end - p < 2) return false;
  *len = 2 + ((size_t) p[0] << 8 | p[1]);
  if ((size_t) (end - p) < *len) return false;
  return !text || (cym_utf8_feed(&st, p + 2, *len - 2, NULL) && st == 0);
}

/* The length of the value of property `id` at p (MQTT 5 section 2.2.2.2),
 * or false when the id is unknown, or the value runs short or has a string
 * that is not UTF-8. */
static bool cym_prop_value(uint8_t id, const uint8_t *p, const uint8_t *end,
                           size_t *len) {
  size_t more = 0;
  switch (id) {
    case 0x01: case 0x17: case 0x19: case 0x24:
    case 0x25: case 0x28: case 0x29: case 0x2A:
      *len = 1;
      break;
    case 0x13: case 0x21: case 0x22: case 0x23:
      *len = 2;
      break;
    case 0x02: case 0x11: case 0x18: case 0x27:
      *len = 4;
      break;
    case 0x0B: /* variable byte integer */
      for (*len = 0; *len < 4 && p + *len < end; (*len)++)
        if (!(p[*len] & 0x80)) return ++(*len), true;
      return false;
    case 0x03: case 0x08: case 0x12: case 0x15:
    case 0x1A: case 0x1C: case 0x1F:
      return cym_prop_field(p, end, true, len);
    case 0x09: case 0x16:
      return cym_prop_field(p, end, false, len);
    case 0x26: /* User Property: two strings */
      if (!cym_prop_field(p, end, true, len) ||
          !cym_prop_field(p + *len, end, true, &more))
        return false;
      *len += more;
      return true;
    default:
      return false;
  }
  return (size_t) (end - p) >= *len;
}

/* Walks an MQTT 5 property block: every property of a known id and whole,
 * its strings UTF-8.  Records the id and the value's offset of each one
 * other than User Property, at most `cap`, for Python to read (a packet of
 * a few MB may hold hundreds of thousands of User Properties, which stay
 * here).  Returns how many it recorded; -1 for a broken block, -2 for more
 * than `cap` (with 30-odd ids, some id is given twice). */
int cym_mqtt_props_walk(const char *block, size_t n, uint8_t *ids, size_t *at,
                        int cap) {
  const uint8_t *p = (const uint8_t *) block, *end = p + n;
  int k = 0;
  while (p < end) {
    uint8_t id = *p++;
    size_t len;
    if (!cym_prop_value(id, p, end, &len)) return -1;
    if (id != 0x26) {
      if (k == cap) return -2;
      ids[k] = id;
      at[k++] = (size_t) (p - (const uint8_t *) block);
    }
    p += len;
  }
  return k;
}

/* Checks the MQTT 5 properties of a PUBLISH (or, `will`, of a will): every
 * one whole and one such a packet may carry (MQTT 5 section 3.3.2.3), none
 * but User Property twice, strings UTF-8, a Payload Format Indicator of 0
 * or 1, a Response Topic without wildcards.  Returns 0, or the reason code
 * of the DISCONNECT: 0x94 for a Topic Alias (the CONNACK allows none), 0x82
 * (Protocol Error) for the rest.  cut[0], cut[1]: where the Message Expiry
 * Interval is and its value (cut[0] = n: none); cut[2]: where a will's Will
 * Delay Interval is (n: none); each is 5 bytes. */
int cym_mqtt_props_check(const char *block, size_t n, int will, size_t cut[3]) {
  const uint8_t *p = (const uint8_t *) block, *start = p, *end = p + n;
  uint32_t seen = 0; /* bit per id below 32 */
  cut[0] = cut[2] = n, cut[1] = 0;
  while (p < end) {
    uint8_t id = *p++;
    size_t len;
    if (id == 0x23) return will ? 0x82 : 0x94; /* Topic Alias */
    if (!cym_prop_value(id, p, end, &len)) return 0x82;
    if (id == 0x26) {
      p += len;
      continue;
    }
    if (id >= 32 || (seen >> id & 1)) return 0x82; /* not for PUBLISH, or twice */
    seen |= 1u << id;
    switch (id) {
      case 0x01: /* Payload Format Indicator */
        if (*p > 1) return 0x82;
        break;
      case 0x02: /* Message Expiry Interval */
        cut[0] = (size_t) (p - 1 - start);
        cut[1] = (size_t) p[0] << 24 | (size_t) p[1] << 16 | (size_t) p[2] << 8 | p[3];
        break;
      case 0x18: /* Will Delay Interval */
        if (!will) return 0x82;
        cut[2] = (size_t) (p - 1 - start);
        break;
      case 0x08: /* Response Topic: a topic name */
        if (len == 2 || memchr(p + 2, '+', len - 2) != NULL ||
            memchr(p + 2, '#', len - 2) != NULL)
          return 0x82;
        break;
      case 0x03: /* Content Type */
      case 0x09: /* Correlation Data */
        break;
      default:
        return 0x82;
    }
    p += len;
  }
  return 0;
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
                                   unsigned next_pid, unsigned max_packet) {
  struct cym_bsess *s;
  if (c->pfn != cym_mqtt_cb || !c->is_accepted || c->is_closing ||
      cym_mqtt_state(c)->bsess != NULL)
    return NULL;
  s = (struct cym_bsess *) calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->c = c;
  s->max_inflight = max_inflight < 0xFFFF ? max_inflight : 0xFFFF;
  s->max_queued = max_queued;
  s->max_packet = max_packet;
  s->next_pid = (uint16_t) next_pid;
  cym_mqtt_state(c)->bsess = s;
  return s;
}

/* A message the session had in flight on an earlier connection: back into
 * the window under its packet id, and resent (DUP), or its PUBREL resent.
 * 0, or CYM_E_NOMEM. */
int cym_bsess_resume(struct cym_bsess *s, unsigned pid, const char *topic,
                     size_t tl, const char *data, size_t dl, int flags,
                     int released, const char *props, size_t pl,
                     uint64_t expire_at) {
  struct cym_bview v = cym_bview_of(topic, tl, props, pl, data, dl, expire_at);
  struct cym_bmsg *m = cym_bmsg_new(&v);
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
                       const char *data, size_t dl, int qos, int retain,
                       const char *props, size_t pl, uint64_t expire_at) {
  struct cym_bmsg *shared = NULL;
  struct cym_bview v = cym_bview_of(topic, tl, props, pl, data, dl, expire_at);
  cym_bsess_put(s, &v, qos, retain, &shared);
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
  struct cym_bview v;
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
  v = cym_bmsg_view(e->m);
  out->topic = v.topic, out->topic_len = v.tl;
  out->props = v.props, out->props_len = v.pl;
  out->data = v.data, out->data_len = v.dl;
  out->expire_at = v.expire_at;
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
