/* WebSocket support.  Mongoose's own WebSocket handler (mg_ws_cb) frames,
 * unmasks, reassembles fragments, answers PING and echoes CLOSE, but it
 * trusts what it reads: reserved bits, unknown opcodes, fragmented or long
 * control frames, stray continuation frames, unmasked client frames, invalid
 * UTF-8 and bad close codes all pass or corrupt the reassembly, and a frame
 * larger than the receive limit makes it wait until the buffer overflows.
 *
 * cym_ws_cb is installed as the protocol handler instead.  Before handing the
 * buffered frames to mg_ws_cb it reads their headers (and text payloads) and
 * stops at the first violation of RFC 6455: the frames before it are
 * delivered as usual, then the connection sends a CLOSE with the matching
 * status code, reports MG_EV_ERROR and closes once that CLOSE is flushed.
 * It also runs the closing handshake we start (cym_ws_close): the peer's
 * CLOSE answers ours instead of being echoed.
 *
 * Per-connection state lives at the start of c->data, the scratch space
 * Mongoose leaves to the connection's protocol; WebSocket connections have
 * no other user of it (static file serving uses its end, and only before an
 * upgrade).  pfn_data stays mg_ws_cb's: the offset where unprocessed frames
 * start, after the fragments of a message kept so far. */

#define CYM_WS_CLOSE_SENT 1u  /* a CLOSE went out: no more frames from us */
#define CYM_WS_FRAG 2u        /* a fragmented message is being received */
#define CYM_WS_FRAG_TEXT 4u   /* ... and it is a text message */
#define CYM_WS_FRAG_Z 8u      /* ... and it is compressed (RSV1) */
#define CYM_WS_PMD 16u        /* permessage-deflate was negotiated */
#define CYM_WS_CLOSE_WAIT_MS 5000 /* how long our CLOSE waits for the answer */
#define CYM_WS_DEFAULT_MAX (3u * 1024u * 1024u) /* message limit, none given */
#define CYM_WS_HARD_MAX (1u << 30) /* mg_ws_cb never parses a longer frame */
#define CYM_WS_KEEP_BUF (256u * 1024u) /* receive buffer kept between messages */

/* What a WebSocket needs beyond the frame checks: compression, keep-alive,
 * its own message limit, the subprotocol.  On the heap, made by the upgrade
 * or by cym_ws_client, freed at MG_EV_CLOSE. */
struct cym_wsx {
  struct cym_pmd *pmd;  /* deflate.c, once negotiated */
  uint64_t max_msg;     /* 0: the listener's limit */
  uint64_t ping_ms, pong_ms; /* keep-alive interval and timeout; 0: none */
  uint64_t next_ping, pong_due; /* pong_due: 0 while no PING is unanswered */
  uint32_t ping_seq;
  int offer_pmd;        /* client: permessage-deflate offered */
  char *offered;        /* client: the subprotocols offered, comma-separated */
  char *proto;          /* the subprotocol in use, NULL for none */
  const char *err;      /* a failure found while mg_ws_cb delivers */
  int err_code;
};

struct cym_ws {
  uint64_t deadline;  /* when CLOSE_SENT: close the socket by this time */
  uint32_t utf8;      /* UTF-8 check state across the fragments of a text message */
  uint32_t msg_len;   /* payload bytes of the fragmented message so far */
  uint16_t peer_code; /* status code of the peer's CLOSE; 0 before one */
  uint8_t flags;
  struct cym_wsx *x;  /* NULL for a plain WebSocket */
};

static struct cym_ws *cym_ws_of(struct mg_connection *c) {
  return (struct cym_ws *) (void *) c->data;
}

typedef char cym_ws_fits[sizeof(struct cym_ws) <= MG_DATA_SIZE ? 1 : -1];

/* The largest message c may receive, in payload bytes (after inflation). */
static uint64_t cym_ws_max(struct mg_connection *c) {
  struct cym_wsx *x = cym_ws_of(c)->x;
  int64_t lim;
  if (x != NULL && x->max_msg) return x->max_msg;
  lim = cym_limits_ws_max(c); /* limits.c: -1 when none of ours */
  if (lim == CYM_LIM_NONE) return c->is_accepted ? CYM_WS_HARD_MAX : CYM_WS_DEFAULT_MAX;
  return (uint64_t) lim < CYM_WS_HARD_MAX ? (uint64_t) lim : CYM_WS_HARD_MAX;
}

static void cym_wsx_free(struct mg_connection *c) {
  struct cym_ws *ws = cym_ws_of(c);
  struct cym_wsx *x = ws->x;
  if (x == NULL) return;
  cym_pmd_free(x->pmd);
  free(x->offered);
  free(x->proto);
  free(x);
  ws->x = NULL;
  ws->flags &= (uint8_t) ~CYM_WS_PMD;
}

/* ---- UTF-8 check that can stop and resume at any byte ------------------
 * The state packs the continuation bytes still due (bits 0..7) and the
 * range allowed for the next one: low bound in bits 8..15, high in 16..23
 * (RFC 3629 table: no overlongs, no surrogates, nothing above U+10FFFF). */

#define CYM_U8(need, lo, hi) \
  ((uint32_t) (need) | ((uint32_t) (lo) << 8) | ((uint32_t) (hi) << 16))

static uint32_t cym_utf8_lead(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return CYM_U8(1, 0x80, 0xBF);
  if (b == 0xE0) return CYM_U8(2, 0xA0, 0xBF);
  if (b == 0xED) return CYM_U8(2, 0x80, 0x9F);
  if (b >= 0xE1 && b <= 0xEF) return CYM_U8(2, 0x80, 0xBF);
  if (b == 0xF0) return CYM_U8(3, 0x90, 0xBF);
  if (b >= 0xF1 && b <= 0xF3) return CYM_U8(3, 0x80, 0xBF);
  if (b == 0xF4) return CYM_U8(3, 0x80, 0x8F);
  return 0xFFFFFFFFu; /* never a valid state */
}

/* Feeds n payload bytes (XOR-ed with mask when mask is not NULL, the mask
 * phase starting at 0); false as soon as the bytes cannot be UTF-8. */
static bool cym_utf8_feed(uint32_t *state, const uint8_t *p, size_t n,
                          const uint8_t *mask) {
  uint32_t st = *state;
  uint64_t m64 = 0;
  size_t i = 0;
  if (mask != NULL) {
    uint8_t m8[8] = {mask[0], mask[1], mask[2], mask[3],
                     mask[0], mask[1], mask[2], mask[3]};
    memcpy(&m64, m8, 8);
  }
  while (i < n) {
    uint8_t b;
    /* ASCII runs, 8 bytes at a time where the mask phase allows */
    if (st == 0 && (i & 3) == 0) {
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if ((w ^ m64) & 0x8080808080808080ULL) break;
        i += 8;
      }
      if (i >= n) break;
    }
    b = mask == NULL ? p[i] : (uint8_t) (p[i] ^ mask[i & 3]);
    i++;
    if (st == 0) {
      if (b < 0x80) continue;
      st = cym_utf8_lead(b);
      if (st == 0xFFFFFFFFu) return false;
    } else {
      if (b < ((st >> 8) & 0xFF) || b > ((st >> 16) & 0xFF)) return false;
      st = (st & 0xFF) - 1 ? CYM_U8((st & 0xFF) - 1, 0x80, 0xBF) : 0;
    }
  }
  *state = st;
  return true;
}

/* ---- frames -------------------------------------------------------------- */

struct cym_frame {
  uint8_t flags;     /* first header byte: FIN, RSV1-3, opcode */
  bool masked;
  size_t header_len; /* including the mask */
  uint64_t len;      /* payload length as declared */
};

/* Reads a frame header; false until the whole header is buffered. */
static bool cym_frame_head(const uint8_t *p, size_t n, struct cym_frame *f) {
  size_t h;
  uint8_t marker;
  uint64_t len;
  if (n < 2) return false;
  marker = p[1] & 0x7F; /* 126: 16-bit length follows, 127: 64-bit */
  h = marker == 126 ? 4 : marker == 127 ? 10 : 2;
  f->masked = (p[1] & 0x80) != 0;
  if (f->masked) h += 4;
  if (n < h) return false;
  if (marker == 126) {
    len = ((uint64_t) p[2] << 8) | p[3];
  } else if (marker == 127) {
    int i;
    len = 0;
    for (i = 2; i < 10; i++) len = (len << 8) | p[i];
  } else {
    len = marker;
  }
  f->flags = p[0];
  f->header_len = h;
  f->len = len;
  return true;
}

/* Close codes a peer may send (RFC 6455 7.4 and the IANA registry). */
static bool cym_close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

/* A CLOSE went out: no frames from us after it, and the socket closes
 * CYM_WS_CLOSE_WAIT_MS from now at the latest, even if the peer neither
 * answers nor reads. */
static void cym_ws_close_sent(struct mg_connection *c) {
  struct cym_ws *ws = cym_ws_of(c);
  ws->flags |= CYM_WS_CLOSE_SENT;
  ws->deadline = mg_millis() + CYM_WS_CLOSE_WAIT_MS;
}

/* Queues a CLOSE frame with a status code and a reason (at most 123 bytes). */
static bool cym_ws_send_close(struct mg_connection *c, int code,
                              const char *reason, size_t len) {
  uint8_t buf[125];
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[0] = (uint8_t) (code >> 8), buf[1] = (uint8_t) code;
  if (len > 0) memcpy(buf + 2, reason, len);
  if (mg_ws_send(c, buf, len + 2, WEBSOCKET_OP_CLOSE) == 0) return false;
  cym_ws_close_sent(c);
  return true;
}

/* Ends the connection for a protocol violation: CLOSE with `code`, then
 * MG_EV_ERROR with `msg`, then close once the CLOSE is flushed. */
static void cym_ws_fail(struct mg_connection *c, int code, const char *msg) {
  if (c->is_closing) return;
  if (!(cym_ws_of(c)->flags & CYM_WS_CLOSE_SENT))
    cym_ws_send_close(c, code, msg, strlen(msg));
  c->recv.len = 0;
  c->pfn_data = NULL;
  c->is_draining = 1;
  MG_ERROR(("%lu %s", c->id, msg));
  mg_call(c, MG_EV_ERROR, (void *) msg);
}

/* What the header check finds wrong with a frame, or NULL. */
static const char *cym_frame_error(struct mg_connection *c,
                                   const struct cym_frame *f, uint8_t flags,
                                   uint64_t kept, uint64_t max, int *code) {
  uint8_t op = f->flags & 0x0F;
  bool fin = (f->flags & 0x80) != 0;
  *code = 1002;
  /* RSV1 marks a compressed message: on its first frame only */
  if (f->flags & ((flags & CYM_WS_PMD) && (op == 1 || op == 2) ? 0x30 : 0x70))
    return "WebSocket protocol error: reserved bits set";
  if ((op > 2 && op < 8) || op > 10)
    return "WebSocket protocol error: unknown opcode";
  if (op >= 8 && (!fin || f->len > 125))
    return "WebSocket protocol error: fragmented or long control frame";
  if (c->is_client ? f->masked : !f->masked)
    return c->is_client ? "WebSocket protocol error: masked frame from server"
                        : "WebSocket protocol error: unmasked frame from client";
  if (op == 0 && !(flags & CYM_WS_FRAG))
    return "WebSocket protocol error: continuation without a message";
  if (op != 0 && op < 8 && (flags & CYM_WS_FRAG))
    return "WebSocket protocol error: new message inside a fragmented one";
  /* The message so far (fragments Mongoose keeps, each one byte longer
   * in `kept`) plus this frame must stay within the connection's limit,
   * which also bounds the receive buffer. */
  if (op < 8 && (kept ? kept - 1 : 0) + f->len > max) {
    *code = 1009;
    cym_lim_log(c, CYM_LOG_WARNING, "WebSocket message too large (1009)");
    return "WebSocket message too large";
  }
  return NULL;
}

/* Checks a complete CLOSE frame's payload (masked as received). */
static const char *cym_close_error(const uint8_t *p, size_t n,
                                   const uint8_t *mask, int *code) {
  uint8_t b0, b1;
  uint32_t st = 0;
  *code = 1002;
  if (n == 0) return NULL;
  if (n == 1) return "WebSocket protocol error: one-byte close payload";
  b0 = mask ? (uint8_t) (p[0] ^ mask[0]) : p[0];
  b1 = mask ? (uint8_t) (p[1] ^ mask[1]) : p[1];
  if (!cym_close_code_ok(((unsigned) b0 << 8) | b1))
    return "WebSocket protocol error: invalid close code";
  if (n > 2) {
    uint8_t m[4];
    int i;
    /* the reason starts at payload offset 2: shift the mask phase */
    for (i = 0; i < 4; i++) m[i] = mask ? mask[(i + 2) & 3] : 0;
    if (!cym_utf8_feed(&st, p + 2, n - 2, mask ? m : NULL) || st != 0) {
      *code = 1007;
      return "WebSocket protocol error: close reason is not UTF-8";
    }
  }
  return NULL;
}

/* Our CLOSE was answered: report the peer's CLOSE and close. */
static void cym_ws_closed(struct mg_connection *c, const uint8_t *p,
                          const struct cym_frame *f) {
  uint8_t payload[125];
  size_t i, n = (size_t) f->len;
  const uint8_t *data = p + f->header_len, *mask = data - 4;
  struct mg_ws_message m;
  for (i = 0; i < n; i++)
    payload[i] = f->masked ? (uint8_t) (data[i] ^ mask[i & 3]) : data[i];
  m.data = mg_str_n((char *) payload, n);
  m.flags = f->flags;
  c->recv.len = 0;
  c->pfn_data = NULL;
  c->is_draining = 1;
  mg_call(c, MG_EV_WS_CTL, &m);
}

/* A PONG arrived: the one our keep-alive PING waits for clears it. */
static void cym_ws_pong(struct cym_wsx *x, const uint8_t *data, size_t n,
                        const uint8_t *mask) {
  uint8_t b[4];
  size_t i;
  if (x == NULL || !x->pong_due || n != 4) return;
  for (i = 0; i < 4; i++) b[i] = mask ? (uint8_t) (data[i] ^ mask[i]) : data[i];
  if (memcmp(b, &x->ping_seq, 4) == 0) x->pong_due = 0;
}

/* The receive buffer of a frame still arriving grows to hold it whole at
 * once: one allocation instead of one per MG_IO_SIZE (512) bytes read,
 * which cost a 64 KiB message 128 reallocations and copies. */
static void cym_ws_reserve(struct mg_connection *c, size_t need) {
  if (need > c->recv.size) mg_iobuf_resize(&c->recv, need);
}

static bool cym_ws_failed(struct mg_connection *c);

/* MG_EV_READ on an open WebSocket: check the buffered frames, hand the good
 * ones to mg_ws_cb, then act on what stopped the check. */
static void cym_ws_read(struct mg_connection *c, void *ev_data) {
  struct cym_ws *ws = cym_ws_of(c);
  size_t ofs = (size_t) c->pfn_data, pos = ofs, end = c->recv.len;
  uint8_t flags = ws->flags;
  uint32_t utf8 = ws->utf8;
  uint64_t msg_len = ws->msg_len;
  const char *err = NULL;
  int code = 0;
  bool answered = false, echoed = false;
  uint64_t max = cym_ws_max(c);
  struct cym_frame f;

  while (pos < end && cym_frame_head(c->recv.buf + pos, end - pos, &f)) {
    const uint8_t *p = c->recv.buf + pos;
    const uint8_t *mask = f.masked ? p + f.header_len - 4 : NULL;
    const uint8_t *data = p + f.header_len;
    uint8_t op = f.flags & 0x0F;
    bool fin = (f.flags & 0x80) != 0;
    uint64_t kept = (flags & CYM_WS_FRAG) ? msg_len + 1 : 0;
    if ((err = cym_frame_error(c, &f, flags, kept, max, &code)) != NULL) break;
    if (f.header_len + f.len > end - pos) { /* wait for the rest */
      cym_ws_reserve(c, pos + f.header_len + (size_t) f.len);
      break;
    }
    if (op == WEBSOCKET_OP_CLOSE) {
      err = cym_close_error(data, (size_t) f.len, mask, &code);
      if (err != NULL) break;
      /* 1005: "no status received" (RFC 6455 7.1.5) */
      ws->peer_code = f.len < 2 ? 1005
                                : (uint16_t) (((mask ? data[0] ^ mask[0] : data[0]) << 8) |
                                              (mask ? data[1] ^ mask[1] : data[1]));
      if (flags & CYM_WS_CLOSE_SENT) {
        answered = true; /* mg_ws_cb must not echo it */
      } else {
        pos += f.header_len + (size_t) f.len;
        echoed = true; /* mg_ws_cb echoes it */
      }
      break; /* nothing after a CLOSE counts */
    }
    if (op == WEBSOCKET_OP_PONG) cym_ws_pong(ws->x, data, (size_t) f.len, mask);
    if ((op == 1 || op == 2) && (f.flags & 0x40)) flags |= CYM_WS_FRAG_Z;
    /* a compressed text message is checked once inflated (cym_ws_inflate) */
    if ((op == WEBSOCKET_OP_TEXT || (op == 0 && (flags & CYM_WS_FRAG_TEXT))) &&
        !(flags & CYM_WS_FRAG_Z)) {
      if (!cym_utf8_feed(&utf8, data, (size_t) f.len, mask) ||
          (fin && utf8 != 0)) {
        err = "WebSocket text message is not valid UTF-8";
        code = 1007;
        break;
      }
    }
    if (op == WEBSOCKET_OP_TEXT || op == WEBSOCKET_OP_BINARY) {
      if (!fin) {
        flags |= CYM_WS_FRAG | (op == WEBSOCKET_OP_TEXT ? CYM_WS_FRAG_TEXT : 0);
        msg_len = f.len;
      }
    } else if (op == 0) {
      msg_len += f.len;
      if (fin) flags &= (uint8_t) ~(CYM_WS_FRAG | CYM_WS_FRAG_TEXT);
    }
    if (!(flags & CYM_WS_FRAG)) {
      msg_len = 0, utf8 = 0;
      flags &= (uint8_t) ~CYM_WS_FRAG_Z;
    }
    pos += f.header_len + (size_t) f.len;
  }

  /* mg_ws_cb sees the good frames only; what follows them is dropped when
   * the check stopped on a violation or a CLOSE. */
  if (answered) {
    uint8_t frame[14 + 125];
    memcpy(frame, c->recv.buf + pos, f.header_len + (size_t) f.len);
    c->recv.len = pos;
    if (pos > ofs) mg_ws_cb(c, MG_EV_READ, ev_data);
    cym_batch_deliver(c->mgr); /* handlers of the frames before the CLOSE first */
    if (ws->x != NULL && cym_ws_failed(c)) return;
    if (!c->is_closing) cym_ws_closed(c, frame, &f);
    return;
  }
  if (err != NULL || echoed) c->recv.len = pos;
  ws->flags = (uint8_t) (flags | (ws->flags & CYM_WS_CLOSE_SENT));
  ws->utf8 = utf8;
  ws->msg_len = (uint32_t) msg_len;
  if (pos > ofs) mg_ws_cb(c, MG_EV_READ, ev_data);
  /* Messages waiting in the batch (core.c) are handled before this
   * connection's CLOSE echo or failure, as if delivered at once. */
  if (echoed || err != NULL || (ws->x != NULL && ws->x->err != NULL)) cym_batch_deliver(c->mgr);
  if (ws->x != NULL && cym_ws_failed(c)) return;
  /* only now: handlers of the frames before the CLOSE may still send */
  if (echoed) cym_ws_close_sent(c);
  if (err != NULL) cym_ws_fail(c, code, err);
  if (c->recv.len == 0 && c->recv.size > CYM_WS_KEEP_BUF) mg_iobuf_free(&c->recv);
}

/* A message failed once delivered by mg_ws_cb (cym_ws_inflate): fail the
 * connection now.  True when it did. */
static bool cym_ws_failed(struct mg_connection *c) {
  struct cym_wsx *x = cym_ws_of(c)->x;
  const char *err;
  if (x == NULL || x->err == NULL) return false;
  err = x->err;
  x->err = NULL;
  cym_ws_fail(c, x->err_code, err);
  return true;
}

/* MG_EV_WS_MSG of a compressed message, before the application sees it:
 * point the message at its inflated bytes.  On failure the message is
 * marked dropped (data.buf NULL: cym_ev does not deliver it), mg_ws_cb is
 * stopped by an empty buffer, and cym_ws_read fails the connection. */
static void cym_ws_inflate(struct mg_connection *c, struct mg_ws_message *m) {
  struct cym_wsx *x = cym_ws_of(c)->x;
  size_t n = 0;
  int rc;
  uint32_t st = 0;
  rc = cym_pmd_inflate(x->pmd, (const uint8_t *) m->data.buf, m->data.len,
                       cym_ws_max(c), &n);
  if (rc == CYM_PMD_OK && (m->flags & 0x0F) == WEBSOCKET_OP_TEXT &&
      (!cym_utf8_feed(&st, x->pmd->out, n, NULL) || st != 0)) {
    x->err = "WebSocket text message is not valid UTF-8", x->err_code = 1007;
  } else if (rc == CYM_PMD_TOO_BIG) {
    cym_lim_log(c, CYM_LOG_WARNING, "WebSocket message too large (1009)");
    x->err = "WebSocket message too large once inflated", x->err_code = 1009;
  } else if (rc == CYM_PMD_BAD) {
    x->err = "WebSocket protocol error: invalid compressed data", x->err_code = 1002;
  } else if (rc == CYM_PMD_NOMEM) {
    x->err = "WebSocket out of memory inflating a message", x->err_code = 1011;
  }
  if (x->err != NULL) {
    m->data.buf = NULL, m->data.len = 0;
    c->recv.len = 0;
    return;
  }
  m->data = mg_str_n((char *) x->pmd->out, n);
  m->flags &= (uint8_t) ~0x40;
}

/* MG_EV_POLL of a WebSocket with keep-alive: PING every ping_ms; no PONG
 * within pong_ms fails the connection with 1011, as a dead peer. */
static void cym_ws_keepalive(struct mg_connection *c, struct cym_wsx *x,
                             uint64_t now) {
  if (c->is_draining || c->is_closing || !c->is_websocket ||
      (cym_ws_of(c)->flags & CYM_WS_CLOSE_SENT))
    return;
  if (x->pong_due && now >= x->pong_due) {
    cym_lim_log(c, CYM_LOG_WARNING, "WebSocket keepalive ping timeout (1011)");
    cym_ws_fail(c, 1011, "WebSocket keepalive ping timeout");
    return;
  }
  if (x->next_ping == 0) x->next_ping = now + x->ping_ms;
  if (now < x->next_ping) return;
  x->next_ping = now + x->ping_ms;
  if (x->pong_due) return; /* one PING outstanding at a time */
  x->ping_seq++;
  mg_ws_send(c, &x->ping_seq, 4, WEBSOCKET_OP_PING);
  if (x->pong_ms) x->pong_due = now + x->pong_ms;
}

/* The value of a header of hm, NULL when absent. */
static struct mg_str *cym_ws_header(struct mg_http_message *hm, const char *name) {
  return mg_http_get_header(hm, name);
}

/* True when `proto` is one of the comma-separated tokens of `list`. */
static bool cym_ws_listed(struct mg_str list, struct mg_str proto) {
  struct mg_str item;
  while (mg_span(list, &item, &list, ',')) {
    while (item.len > 0 && (item.buf[0] == ' ' || item.buf[0] == '\t')) item.buf++, item.len--;
    while (item.len > 0 && (item.buf[item.len - 1] == ' ' || item.buf[item.len - 1] == '\t'))
      item.len--;
    if (mg_strcmp(item, proto) == 0) return true;
  }
  return false;
}

/* Client: the 101 response is buffered whole; check what it agreed to
 * (subprotocol, extensions) before Mongoose opens the WebSocket.  False,
 * with the connection failed, when it agreed to something not offered. */
static bool cym_ws_client_answer(struct mg_connection *c) {
  struct cym_wsx *x = cym_ws_of(c)->x;
  struct mg_http_message hm;
  struct mg_str *proto, *ext;
  const char *bad = NULL;
  int n = mg_http_get_request_len(c->recv.buf, c->recv.len);
  if (n <= 0 || x == NULL || n < 15 || memcmp(c->recv.buf + 9, "101", 3) != 0)
    return true; /* not complete, or mg_ws_client_handshake reports it */
  if (mg_http_parse((char *) c->recv.buf, (size_t) n, &hm) <= 0) return true;
  proto = cym_ws_header(&hm, "Sec-WebSocket-Protocol");
  ext = cym_ws_header(&hm, "Sec-WebSocket-Extensions");
  if (proto != NULL) {
    if (x->offered == NULL || !cym_ws_listed(mg_str(x->offered), *proto) ||
        memchr(proto->buf, ',', proto->len) != NULL) {
      bad = "WebSocket handshake error: subprotocol not offered";
    } else if ((x->proto = mg_mprintf("%.*s", (int) proto->len, proto->buf)) == NULL) {
      bad = "WebSocket handshake error: out of memory";
    }
  }
  if (bad == NULL && ext != NULL) {
    bool broken = true;
    if (x->offer_pmd) x->pmd = cym_pmd_answer(ext, &broken);
    if (x->pmd == NULL)
      bad = broken ? "WebSocket handshake error: extension not offered"
                   : "WebSocket handshake error: out of memory";
  }
  if (bad == NULL) return true;
  c->recv.len = 0;
  mg_error(c, "%s", bad);
  return false;
}

/* True when cym_ws_cb has nothing to do on MG_EV_POLL (core.c,
 * cym_poll_wanted): it keeps the branches of the POLL case below. */
static int cym_ws_poll_quiet(struct mg_connection *c) {
  struct cym_ws *ws = cym_ws_of(c);
  return !c->is_resp && !(ws->flags & CYM_WS_CLOSE_SENT) &&
         !(ws->x != NULL && ws->x->ping_ms);
}

static void cym_ws_cb(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_POLL) {
    struct cym_ws *ws = cym_ws_of(c);
    /* Set by cym_ws_upgrade so that http_cb stops parsing; clearing it
     * makes mg_mgr_poll fire MG_EV_READ, which processes any frames that
     * arrived together with the upgrade request. */
    if (c->is_resp) c->is_resp = 0;
    if ((ws->flags & CYM_WS_CLOSE_SENT) && mg_millis() >= ws->deadline) {
      c->is_closing = 1; /* the peer did not answer or read our CLOSE */
    }
    if (ws->x != NULL && ws->x->ping_ms) cym_ws_keepalive(c, ws->x, *(uint64_t *) ev_data);
    return;
  }
  if (ev == MG_EV_WS_MSG) {
    struct mg_ws_message *m = (struct mg_ws_message *) ev_data;
    /* A reassembled message carries its first frame's header byte, FIN
     * clear; report it as whole, like a single frame (0x81 or 0x82).  The
     * protocol handler runs before the user's, so this is what they see. */
    m->flags |= 0x80;
    if ((m->flags & 0x40) && (cym_ws_of(c)->flags & CYM_WS_PMD)) cym_ws_inflate(c, m);
    return;
  }
  if (ev == MG_EV_WS_OPEN && c->is_client) {
    struct cym_ws *ws = cym_ws_of(c);
    if (ws->x != NULL && ws->x->pmd != NULL) ws->flags |= CYM_WS_PMD;
    return;
  }
  if (ev == MG_EV_CLOSE) {
    cym_wsx_free(c);
    return;
  }
  if (ev != MG_EV_READ) return;
  if (c->is_draining || c->is_closing) {
    c->recv.len = 0; /* closing: what the peer sends no longer matters */
    return;
  }
  if (c->is_client && !c->is_websocket) {
    if (!cym_ws_client_answer(c)) return;
    if (mg_ws_client_handshake(c)) return; /* response not complete yet */
    if (!c->is_websocket || c->is_closing || c->is_draining) return;
  }
  cym_ws_read(c, ev_data);
}

/* Mongoose's 101 answer (ws_handshake) with our header lines, and without
 * its echo of the client's whole Sec-WebSocket-Protocol list. */
static void cym_ws_handshake(struct mg_connection *c, struct mg_str *wskey,
                             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ws_handshake(c, wskey, NULL, fmt, &ap);
  va_end(ap);
}

/* ---- calls from Python ---------------------------------------------------- */

/* The keep-alive and message limit of a new WebSocket; NULL (and no
 * allocation) when it needs none of them. */
static struct cym_wsx *cym_wsx_new(uint64_t max_msg, uint64_t ping_ms,
                                   uint64_t pong_ms, bool need) {
  struct cym_wsx *x;
  if (!need && !max_msg && !ping_ms) return NULL;
  x = (struct cym_wsx *) calloc(1, sizeof(*x));
  if (x == NULL) return NULL;
  x->max_msg = max_msg > CYM_WS_HARD_MAX ? CYM_WS_HARD_MAX : max_msg;
  x->ping_ms = ping_ms;
  x->pong_ms = pong_ms;
  return x;
}

/* Answers the upgrade request hm with 101: the extra header lines
 * `headers` (NULL for none), the subprotocol `proto` (NULL for none),
 * permessage-deflate when `compress` and the client offered it acceptably.
 * MG_EV_WS_OPEN fires before this returns.  Returns 1 once upgraded, 0
 * when the request had no Sec-WebSocket-Key (426 answered), CYM_E_IS_WS
 * when already a WebSocket, CYM_E_NOMEM. */
int cym_ws_upgrade(struct mg_connection *c, struct mg_http_message *hm,
                   const char *headers, const char *proto, int compress,
                   uint64_t ping_ms, uint64_t pong_ms) {
  struct mg_str *wskey = mg_http_get_header(hm, "Sec-WebSocket-Key");
  struct mg_str *offer = mg_http_get_header(hm, "Sec-WebSocket-Extensions");
  struct cym_pmd *pmd = NULL;
  struct cym_wsx *x;
  char ext[200];
  if (c->is_websocket) return CYM_E_IS_WS;
  if (wskey == NULL) {
    mg_ws_upgrade(c, hm, NULL); /* 426 */
    return 0;
  }
  ext[0] = '\0';
  if (compress && offer != NULL) pmd = cym_pmd_accept(offer, ext, sizeof(ext));
  x = cym_wsx_new(0, ping_ms, pong_ms, pmd != NULL || proto != NULL);
  if ((x == NULL && (pmd != NULL || proto != NULL || ping_ms)) ||
      (proto != NULL && (x->proto = mg_mprintf("%s", proto)) == NULL)) {
    cym_pmd_free(pmd);
    if (x != NULL) free(x);
    return CYM_E_NOMEM;
  }
  if (x != NULL) x->pmd = pmd;
  memset(cym_ws_of(c), 0, sizeof(struct cym_ws));
  cym_ws_of(c)->x = x;
  if (pmd != NULL) cym_ws_of(c)->flags |= CYM_WS_PMD;
  c->pfn = cym_ws_cb;
  c->pfn_data = NULL;
  cym_ws_handshake(c, wskey, "%s%s%s%s%s", headers ? headers : "", ext,
                   proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                   proto ? "\r\n" : "");
  c->is_websocket = 1;
  mg_call(c, MG_EV_WS_OPEN, hm);
  /* http_cb is still looping over this buffer: stop it from reading any
   * frames that follow the request as HTTP (see cym_ws_cb). */
  c->is_resp = 1;
  return 1;
}

/* A client made by mg_ws_connect: take over its protocol handler, add the
 * header lines `headers` (NULL for none) to the request still queued, offer
 * permessage-deflate when `compress`, remember the subprotocols `offered`
 * (comma-separated, NULL for none; their header is among `headers`).
 * `max_msg` 0 means CYM_WS_DEFAULT_MAX.  Returns 0 or CYM_E_NOMEM. */
int cym_ws_client(struct mg_connection *c, const char *headers,
                  const char *offered, int compress, uint64_t max_msg,
                  uint64_t ping_ms, uint64_t pong_ms) {
  struct cym_wsx *x;
  if (c->pfn != mg_ws_cb) return CYM_OK;
  memset(cym_ws_of(c), 0, sizeof(struct cym_ws));
  c->pfn = cym_ws_cb;
  x = cym_wsx_new(max_msg, ping_ms, pong_ms, compress || offered != NULL);
  if (x == NULL) return max_msg || ping_ms || compress || offered ? CYM_E_NOMEM : CYM_OK;
  cym_ws_of(c)->x = x;
  x->offer_pmd = compress;
  if (offered != NULL && (x->offered = mg_mprintf("%s", offered)) == NULL)
    return CYM_E_NOMEM;
  if (headers != NULL || compress) {
    /* the request ends with its blank line: insert before it */
    if (c->send.len < 2) return CYM_E_STATE;
    c->send.len -= 2;
    if (headers != NULL) mg_xprintf(mg_pfn_iobuf, &c->send, "%s", headers);
    if (compress) mg_xprintf(mg_pfn_iobuf, &c->send, "%s", cym_pmd_offer);
    mg_xprintf(mg_pfn_iobuf, &c->send, "\r\n");
  }
  return CYM_OK;
}

/* The status code of the peer's CLOSE frame, 0 before one arrived. */
int cym_ws_peer_code(struct mg_connection *c) {
  return c->is_websocket ? cym_ws_of(c)->peer_code : 0;
}

/* The subprotocol in use, NULL for none. */
const char *cym_ws_subprotocol(struct mg_connection *c) {
  struct cym_wsx *x = c->is_websocket ? cym_ws_of(c)->x : NULL;
  return x != NULL ? x->proto : NULL;
}

/* 1 when the connection's messages may be compressed (permessage-deflate). */
int cym_ws_compressed(struct mg_connection *c) {
  return c->is_websocket && (cym_ws_of(c)->flags & CYM_WS_PMD) ? 1 : 0;
}

/* A compressed data message: deflated, then framed with RSV1 set. */
static int cym_ws_send_z(struct mg_connection *c, const char *buf, size_t len,
                         int op) {
  struct cym_pmd *z = cym_ws_of(c)->x->pmd;
  long n = cym_pmd_deflate(z, buf, len);
  size_t sent;
  if (n < 0) return CYM_E_NOMEM;
  sent = mg_ws_send(c, z->zbuf, (size_t) n, op);
  cym_pmd_sent(z);
  if (sent < (size_t) n) return CYM_E_NOMEM;
  c->send.buf[c->send.len - sent] |= 0x40;
  return CYM_OK;
}

int cym_ws_send(struct mg_connection *c, const char *buf, size_t len, int op) {
  uint8_t flags = cym_ws_of(c)->flags;
  if (!c->is_websocket) return CYM_E_NOT_WS;
  if (flags & (CYM_WS_CLOSE_SENT | CYM_WS_PMD)) {
    if (flags & CYM_WS_CLOSE_SENT) return CYM_E_WS_CLOSING;
    if (op == WEBSOCKET_OP_TEXT || op == WEBSOCKET_OP_BINARY)
      return cym_ws_send_z(c, buf, len, op);
  }
  if (mg_ws_send(c, buf, len, op) < len) return CYM_E_NOMEM;
  if (op == WEBSOCKET_OP_CLOSE) cym_ws_close_sent(c);
  return CYM_OK;
}

/* Starts the closing handshake; a no-op when a CLOSE already went out. */
int cym_ws_close(struct mg_connection *c, int code, const char *reason,
                 size_t len) {
  struct cym_ws *ws = cym_ws_of(c);
  if (!c->is_websocket) return CYM_E_NOT_WS;
  if (ws->flags & CYM_WS_CLOSE_SENT) return CYM_OK;
  if (!cym_ws_send_close(c, code, reason, len)) return CYM_E_NOMEM;
  return CYM_OK;
}
