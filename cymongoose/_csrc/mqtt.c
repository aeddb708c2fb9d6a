/* MQTT: our own protocol handler for every MQTT connection, and one-call
 * helpers behind the Connection methods.
 *
 * Our handler takes the place of Mongoose's mqtt_cb (which stays unused)
 * because 7.23's:
 *   - marks a connection that sent a malformed packet as closing without any
 *     MG_EV_ERROR, so the application never learns why it went away;
 *   - parses an MQTT 5 PUBLISH with at most two bytes after the topic and
 *     packet id wrongly (the property length byte becomes payload);
 *   - never sends PINGREQ by itself, so an idle client is dropped by its
 *     broker after 1.5 keep-alive periods;
 *   - never learns the protocol version on the broker side, so MQTT 5
 *     clients of mg_mqtt_listen are parsed as 3.1.1;
 *   - passes MG_EV_MQTT_OPEN a uint8_t * where mongoose.h documents int *.
 * Everything else (automatic PUBACK/PUBREC/PUBREL/PUBCOMP, the events and
 * their order) is what mqtt_cb does. */

/* Per-connection state in c->data, which Mongoose leaves to the protocol
 * handler (HTTP keeps its own state there the same way). */
struct cym_mqtt {
  uint64_t last_tx;   /* mg_millis() when bytes last left */
  uint64_t last_rx;   /* mg_millis() when the last whole packet arrived */
  union {
    uint64_t ping_at;        /* client: when our unanswered PINGREQ was queued; 0: none */
    struct cym_bsess *bsess; /* broker side: MqttBroker's session, or NULL (mqtt_broker.c) */
  };
  uint16_t keepalive; /* seconds; 0 turns keep-alive handling off */
  uint8_t open;       /* client: CONNACK accepted; broker side: CONNECT seen */
  uint8_t batch_acks; /* client: short PUBACKs in a row make one event (cym_mqtt_batch_acks) */
};

typedef char cym_mqtt_fits[sizeof(struct cym_mqtt) <= MG_DATA_SIZE ? 1 : -1];
typedef char cym_mqtt_aligned
    [offsetof(struct mg_connection, data) % sizeof(uint64_t) == 0 ? 1 : -1];

static struct cym_mqtt *cym_mqtt_state(struct mg_connection *c) {
  return (struct cym_mqtt *) (void *) c->data;
}

/* MqttBroker's delivery engine, in mqtt_broker.c */
static size_t cym_broker_max_packet(struct mg_connection *c);
static bool cym_broker_took(struct mg_connection *c, struct cym_bsess *s,
                            struct mg_mqtt_message *mm);
static void cym_broker_closed(struct mg_connection *c, struct cym_bsess *s);

/* Milliseconds from `then` to `now`, never negative. */
static uint64_t cym_since(uint64_t now, uint64_t then) {
  return now > then ? now - then : 0;
}

/* CONNECT seen by a broker: learn the version and keep-alive.  False when
 * the variable header is cut short. */
static bool cym_mqtt_hello(struct mg_connection *c, struct cym_mqtt *st,
                           const struct mg_mqtt_message *mm) {
  const uint8_t *p = (const uint8_t *) mm->dgram.buf + 1;
  const uint8_t *end = (const uint8_t *) mm->dgram.buf + mm->dgram.len;
  size_t name_len;
  while (*p & 0x80) p++; /* remaining length; mg_mqtt_parse validated it */
  p++;
  if (end - p < 2) return false;
  name_len = ((size_t) p[0] << 8) | p[1];
  if ((size_t) (end - p) < 2 + name_len + 4) return false;
  p += 2 + name_len; /* protocol level, connect flags, keep-alive */
  c->is_mqtt5 = p[0] == 5;
  st->keepalive = (uint16_t) ((p[2] << 8) | p[3]);
  st->open = 1;
  return true;
}

/* What mg_mqtt_parse lets through but the protocol forbids, and the MQTT 5
 * short-PUBLISH fix.  False means malformed. */
static bool cym_mqtt_check(struct mg_connection *c, struct cym_mqtt *st,
                           struct mg_mqtt_message *mm) {
  if (mm->cmd == 0 || (mm->cmd == MQTT_CMD_AUTH && !c->is_mqtt5)) return false;
  if (mm->cmd == MQTT_CMD_CONNECT && c->is_accepted)
    return cym_mqtt_hello(c, st, mm);
  if (mm->cmd != MQTT_CMD_PUBLISH) return true;
  if (mm->qos == 3) return false;
  if (c->is_mqtt5 && mm->props_start == 0 && mm->data.len > 0) {
    /* mg_mqtt_parse skipped the properties: read their length here */
    const uint8_t *p = (const uint8_t *) mm->data.buf;
    uint32_t size = 0;
    size_t n = decode_varint(p, mm->data.len, &size);
    if (n == 0 || n + size > mm->data.len) return false;
    mm->props_start = (size_t) (p + n - (const uint8_t *) mm->dgram.buf);
    mm->props_size = size;
    mm->data.buf += n + size;
    mm->data.len -= n + size;
  }
  return true;
}

/* A two-byte-id acknowledgement (the short form, valid in 3.1.1 and 5). */
static bool cym_mqtt_ack(struct mg_connection *c, uint8_t cmd, uint8_t flags,
                         uint16_t id) {
  uint8_t b[4];
  b[0] = (uint8_t) ((cmd << 4) | flags);
  b[1] = 2;
  b[2] = (uint8_t) (id >> 8);
  b[3] = (uint8_t) (id & 0xFF);
  return mg_send(c, b, sizeof(b));
}

/* The automatic answers and the events before MG_EV_MQTT_CMD. */
static bool cym_mqtt_react(struct mg_connection *c, struct cym_mqtt *st,
                           struct mg_mqtt_message *mm) {
  switch (mm->cmd) {
    case MQTT_CMD_CONNACK: {
      int code = mm->ack;
      mg_call(c, MG_EV_MQTT_OPEN, &code);
      if (code == 0) {
        st->open = 1;
      } else {
        c->is_closing = 1;
      }
      return true;
    }
    case MQTT_CMD_PUBLISH:
      if (mm->qos > 0 &&
          !cym_mqtt_ack(c, mm->qos == 2 ? MQTT_CMD_PUBREC : MQTT_CMD_PUBACK, 0,
                        mm->id))
        return false;
      mg_call(c, MG_EV_MQTT_MSG, mm);
      return true;
    case MQTT_CMD_PUBREC: return cym_mqtt_ack(c, MQTT_CMD_PUBREL, 2, mm->id);
    case MQTT_CMD_PUBREL: return cym_mqtt_ack(c, MQTT_CMD_PUBCOMP, 0, mm->id);
    default: return true;
  }
}

/* Whole size of the packet starting the receive buffer once its fixed header
 * is in; 0 while the header is incomplete or malformed (the parser says which). */
static size_t cym_mqtt_announced(const struct mg_iobuf *io) {
  size_t i, len = 0;
  for (i = 1; i < io->len && i <= 4; i++) {
    len |= (size_t) (io->buf[i] & 0x7F) << (7 * (i - 1));
    if (!(io->buf[i] & 0x80)) return 1 + i + len;
  }
  return 0;
}

/* A client publishing at QoS 1 gets PUBACKs in a row: the short ones
 * (3.1.1, and MQTT 5 without reason code) at the head of the receive buffer
 * become one MG_EV_MQTT_CMD whose dgram spans them all, so Python crosses
 * once per burst.  Nothing else about them needs C: PUBACK has no automatic
 * answer. */
#define CYM_MQTT_ACKS_MAX 256
static void cym_mqtt_more_acks(struct mg_connection *c,
                               struct mg_mqtt_message *mm) {
  const uint8_t *b = c->recv.buf;
  size_t n = 0, len = c->recv.len;
  while (n + 4 <= len && b[n] == (MQTT_CMD_PUBACK << 4) && b[n + 1] == 2 &&
         n < 4 * CYM_MQTT_ACKS_MAX)
    n += 4;
  if (n > 4) mm->dgram.len = n;
}

/* Not inlined: cym_mqtt_cb's POLL path, taken far more often, then needs no
 * registers saved (-600 instructions per poll with 52 clients, callgrind). */
__attribute__((noinline)) static void cym_mqtt_read(struct mg_connection *c, struct cym_mqtt *st) {
  size_t limit = cym_broker_max_packet(c);
  /* draining: the last answer (a refusing CONNACK, an MQTT 5 DISCONNECT)
   * is out, and no later packet counts */
  while (!c->is_closing && !c->is_draining) {
    struct mg_mqtt_message mm;
    int rc;
    if (limit != 0 && cym_mqtt_announced(&c->recv) > limit) {
      mg_error(c, "MQTT packet too large");
      break;
    }
    rc = mg_mqtt_parse(c->recv.buf, c->recv.len, c->is_mqtt5 ? 5 : 4, &mm);
    if (rc == MQTT_INCOMPLETE) break;
    if (rc == MQTT_MALFORMED || !cym_mqtt_check(c, st, &mm)) {
      mg_error(c, "MQTT malformed packet");
      break;
    }
    st->last_rx = mg_millis();
    if (!c->is_accepted) st->ping_at = 0;
    if (!cym_mqtt_react(c, st, &mm)) {
      mg_error(c, "OOM");
      break;
    }
    /* a broker's own deliveries and cached routes stay in C (mqtt_broker.c) */
    if (c->is_accepted) {
      if (st->bsess == NULL || !cym_broker_took(c, st->bsess, &mm))
        mg_call(c, MG_EV_MQTT_CMD, &mm);
    } else {
      if (st->batch_acks && mm.cmd == MQTT_CMD_PUBACK) cym_mqtt_more_acks(c, &mm);
      mg_call(c, MG_EV_MQTT_CMD, &mm);
    }
    mg_iobuf_del(&c->recv, 0, mm.dgram.len);
  }
}

/* Keep-alive, once per poll, in C so that it costs no Python call.  A client
 * pings after half a keep-alive period without sending (a slow poll cannot
 * make it late) and gives up when the ping goes unanswered for a whole
 * period; a broker drops a client silent for 1.5 periods (MQTT 3.1.2.10). */
static void cym_mqtt_tick(struct mg_connection *c, struct cym_mqtt *st,
                          uint64_t now) {
  uint64_t ka = (uint64_t) st->keepalive * 1000;
  if (ka == 0 || !st->open || c->is_closing) return;
  if (c->is_accepted) {
    if (cym_since(now, st->last_rx) > ka + ka / 2)
      mg_error(c, "MQTT keep-alive timeout");
  } else if (st->ping_at != 0) {
    if (cym_since(now, st->ping_at) > ka) mg_error(c, "MQTT keep-alive timeout");
  } else if (cym_since(now, st->last_tx) >= ka / 2) {
    mg_mqtt_ping(c);
    st->ping_at = st->last_tx = now;
  }
}

static void cym_mqtt_cb(struct mg_connection *c, int ev, void *ev_data) {
  struct cym_mqtt *st = cym_mqtt_state(c);
  /* POLL first, and without keep-alive (listeners too) nothing: it comes for
   * every connection on every poll */
  if (ev == MG_EV_POLL) {
    if (st->keepalive != 0) cym_mqtt_tick(c, st, *(uint64_t *) ev_data);
    return;
  }
  if (c->is_listening) return;
  switch (ev) {
    case MG_EV_READ: cym_mqtt_read(c, st); break;
    case MG_EV_WRITE: st->last_tx = mg_millis(); break;
    case MG_EV_CLOSE:
      if (c->is_accepted && st->bsess != NULL) cym_broker_closed(c, st->bsess);
      break;
    default: break;
  }
}

struct mg_connection *cym_mqtt_connect(struct cym_mgr *m, const char *url,
                                       const struct mg_mqtt_opts *opts,
                                       uintptr_t state) {
  struct mg_connection *c = mg_connect_svc(&m->mgr, url, cym_ev, (void *) state,
                                           cym_mqtt_cb, NULL);
  if (c != NULL) {
    struct cym_mqtt *st = cym_mqtt_state(c);
    st->keepalive = opts->keepalive;
    st->last_tx = mg_millis();
    mg_mqtt_login(c, opts);
  }
  return c;
}

/* backlog: the kernel's accept queue (vendor patch 0010); Mongoose's 128
 * overflows under a reconnect storm and clients back off for seconds. */
struct mg_connection *cym_mqtt_listen(struct cym_mgr *m, const char *url,
                                      uintptr_t state, int backlog) {
  struct mg_connection *c;
  cym_lsn_backlog = backlog;
  c = mg_listen(&m->mgr, url, cym_ev, (void *) state);
  cym_lsn_backlog = 0;
  if (c != NULL) c->pfn = cym_mqtt_cb, c->pfn_data = NULL;
  return c;
}

uint16_t cym_mqtt_pub(struct mg_connection *c, const char *topic,
                      size_t topic_len, const char *msg, size_t msg_len,
                      int qos, int retain, struct mg_mqtt_prop *props,
                      size_t nprops) {
  struct mg_mqtt_opts o;
  memset(&o, 0, sizeof(o));
  o.topic = mg_str_n(topic, topic_len);
  o.message = mg_str_n(msg, msg_len);
  o.qos = (uint8_t) qos;
  o.retain = retain != 0;
  o.props = props;
  o.num_props = nprops;
  return mg_mqtt_pub(c, &o);
}

void cym_mqtt_sub(struct mg_connection *c, const char *topic, size_t topic_len,
                  int qos, int unsub, struct mg_mqtt_prop *props,
                  size_t nprops) {
  struct mg_mqtt_opts o;
  memset(&o, 0, sizeof(o));
  o.topic = mg_str_n(topic, topic_len);
  o.qos = (uint8_t) qos;
  o.props = props;
  o.num_props = nprops;
  if (unsub) {
    mg_mqtt_unsub(c, &o);
  } else {
    mg_mqtt_sub(c, &o);
  }
}

/* PUBLISH with a caller-chosen packet id and flags (DUP, QoS, RETAIN in the
 * low nibble), for sessions that number and resend their own messages.  An
 * MQTT 5 connection gets an empty property list. */
bool cym_mqtt_publish(struct mg_connection *c, const char *topic,
                      size_t topic_len, const char *msg, size_t msg_len,
                      int flags, int id) {
  uint8_t head[8], tail[3];
  size_t n = 0, t = 0, len = 2 + topic_len + msg_len;
  if (flags & 6) {
    tail[t++] = (uint8_t) (id >> 8);
    tail[t++] = (uint8_t) (id & 0xFF);
  }
  if (c->is_mqtt5) tail[t++] = 0;
  len += t;
  head[n++] = (uint8_t) ((MQTT_CMD_PUBLISH << 4) | (flags & 0x0F));
  do {
    head[n] = (uint8_t) (len & 0x7F);
    len >>= 7;
    if (len) head[n] |= 0x80;
    n++;
  } while (len);
  head[n++] = (uint8_t) (topic_len >> 8);
  head[n++] = (uint8_t) (topic_len & 0xFF);
  return mg_send(c, head, n) && mg_send(c, topic, topic_len) &&
         mg_send(c, tail, t) && (msg_len == 0 || mg_send(c, msg, msg_len));
}

void cym_mqtt_disconnect(struct mg_connection *c) {
  struct mg_mqtt_opts o;
  memset(&o, 0, sizeof(o));
  mg_mqtt_disconnect(c, &o);
}

int cym_mqtt_version(struct mg_connection *c) { return c->is_mqtt5 ? 5 : 4; }

/* The value type of a property id (MQTT_PROP_TYPE_*), or -1 if unknown. */
int cym_mqtt_prop_type(int id) {
  return id < 0 || id > 255 ? -1 : mqtt_prop_type_by_id((uint8_t) id);
}

#define CYM_MQTT_MALFORMED 0x80

/* Is mm a packet the receiver must close the connection for, though
 * Mongoose parsed it?  Fixed-header flags other than the ones its type
 * requires: 2 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0 for the others but
 * PUBLISH (MQTT 3.1.1 section 2.2.2, MQTT-2.2.2-2); DUP on a QoS 0 PUBLISH
 * (MQTT-3.3.1-2); packet identifier 0 on SUBSCRIBE, UNSUBSCRIBE or a QoS 1
 * or 2 PUBLISH (MQTT-2.3.1-1); a PINGREQ with a body (section 3.12); an
 * MQTT 5 PUBLISH with a Topic Alias (a broker that gives no Topic Alias
 * Maximum allows none, MQTT 5 section 3.3.2.3.4) or a Subscription
 * Identifier (only servers send those, section 3.3.2.3.8). */
static bool cym_mqtt_malformed(const struct mg_mqtt_message *mm) {
  uint8_t b0 = mm->dgram.len > 0 ? (uint8_t) mm->dgram.buf[0] : 0;
  switch (mm->cmd) {
    case MQTT_CMD_PUBLISH:
      if (mm->props_size > 0) {
        struct mg_mqtt_prop prop;
        size_t ofs = 0;
        while ((ofs = mg_mqtt_next_prop((struct mg_mqtt_message *) mm, &prop, ofs)) > 0) {
          if (prop.id == MQTT_PROP_TOPIC_ALIAS || prop.id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER)
            return true;
        }
      }
      return mm->qos > 0 ? mm->id == 0 : (b0 & 8) != 0;
    case MQTT_CMD_SUBSCRIBE:
    case MQTT_CMD_UNSUBSCRIBE:
      return (b0 & 15) != 2 || mm->id == 0;
    case MQTT_CMD_PUBREL:
      return (b0 & 15) != 2;
    case MQTT_CMD_PINGREQ:
      return (b0 & 15) != 0 || mm->dgram.len != 2;
    default:
      return (b0 & 15) != 0;
  }
}

/* Every field a broker reads from a packet, in one call (a cffi call costs
 * CPython less than the five field reads it replaces).  Returns
 * cmd | qos << 4 | retain << 6 | id << 8 | topic length << 24 (for PUBACK:
 * how many PUBACKs the event carries, see cym_mqtt_more_acks), with bit 7
 * (CYM_MQTT_MALFORMED) set for a packet the receiver must close the
 * connection for (cym_mqtt_malformed).  For
 * PUBLISH, at[0] points at the topic and span[0] counts the bytes from there
 * to the packet's end, span[1] those from the topic to the payload (the
 * payload runs to the end); other packets leave them untouched.  `addr` is
 * the event data's address, as the dispatcher hands it to views. */
uint64_t cym_mqtt_fields(uintptr_t addr, const char **at,
                         size_t *span) {
  const struct mg_mqtt_message *mm = (const struct mg_mqtt_message *) addr;
  uint64_t f = (uint64_t) (mm->cmd & 15) | (uint64_t) (mm->qos & 3) << 4 |
               (uint64_t) mm->id << 8;
  if (cym_mqtt_malformed(mm)) f |= CYM_MQTT_MALFORMED;
  if (mm->cmd == MQTT_CMD_PUBACK) {
    const uint8_t *d = (const uint8_t *) mm->dgram.buf;
    size_t n = d[0] == (MQTT_CMD_PUBACK << 4) && d[1] == 2 ? mm->dgram.len / 4 : 1;
    f |= (uint64_t) n << 24;
  }
  if (mm->cmd == MQTT_CMD_PUBLISH) {
    const char *end = mm->dgram.buf + mm->dgram.len;
    f |= (uint64_t) (mm->dgram.buf[0] & 1) << 6 | (uint64_t) mm->topic.len << 24;
    at[0] = mm->topic.buf;
    span[0] = (size_t) (end - mm->topic.buf);
    span[1] = (size_t) (mm->data.buf - mm->topic.buf);
  }
  return f;
}

/* Let a client connection batch the PUBACKs its broker sends in a row
 * (cym_mqtt_more_acks): each event's dgram then holds one or more 4-byte
 * PUBACKs, which MqttClient reads all. */
void cym_mqtt_batch_acks(struct mg_connection *c) {
  cym_mqtt_state(c)->batch_acks = 1;
}
