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
#define CYM_WS_CLOSE_WAIT_MS 5000 /* how long our CLOSE waits for the answer */


struct cym_ws {
  uint64_t deadline;  /* when CLOSE_SENT: close the socket by this time */
  uint32_t utf8;      /* UTF-8 check state across the fragments of a text message */
  uint32_t msg_len;   /* payload bytes of the fragmented message so far */
  uint16_t peer_code; /* status code of the peer's CLOSE; 0 before one */
  uint8_t flags;
};

static struct cym_ws *cym_ws_of(struct mg_connection *c) {
  return (struct cym_ws *) (void *) c->data;
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
                                   uint64_t kept, int *code) {
  uint8_t op = f->flags & 0x0F;
  bool fin = (f->flags & 0x80) != 0;
  *code = 1002;
  if (f->flags & 0x70) return "WebSocket protocol error: reserved bits set";
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
  /* The whole frame, plus the fragments Mongoose keeps before it, must fit
   * the receive buffer; otherwise it could never be read whole. */
  if (op < 8 && (f->len > MG_MAX_RECV_SIZE ||  /* also keeps the sum exact */
                 kept + f->header_len + f->len > MG_MAX_RECV_SIZE)) {
    *code = 1009;
    cym_lim_log(c, CYM_LOG_WARNING, "WebSocket message too large (1009)");
    return "WebSocket message too large (limit MG_MAX_RECV_SIZE, 3 MiB)";
  }
  if (op < 8 && cym_limits_ws_max(c) != CYM_LIM_NONE &&  /* limits.c */
      (kept ? kept - 1 : 0) + f->len > (uint64_t) cym_limits_ws_max(c)) {
    *code = 1009;
    cym_lim_log(c, CYM_LOG_WARNING, "WebSocket message too large (1009)");
    return "WebSocket message too large (limit max_ws_message_size)";
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
  struct cym_frame f;

  while (pos < end && cym_frame_head(c->recv.buf + pos, end - pos, &f)) {
    const uint8_t *p = c->recv.buf + pos;
    const uint8_t *mask = f.masked ? p + f.header_len - 4 : NULL;
    const uint8_t *data = p + f.header_len;
    uint8_t op = f.flags & 0x0F;
    bool fin = (f.flags & 0x80) != 0;
    uint64_t kept = (flags & CYM_WS_FRAG) ? msg_len + 1 : 0;
    if ((err = cym_frame_error(c, &f, flags, kept, &code)) != NULL) break;
    if (f.header_len + f.len > end - pos) break; /* wait for the rest */
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
    if (op == WEBSOCKET_OP_TEXT || (op == 0 && (flags & CYM_WS_FRAG_TEXT))) {
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
    if (!(flags & CYM_WS_FRAG)) msg_len = 0, utf8 = 0;
    pos += f.header_len + (size_t) f.len;
  }

  /* mg_ws_cb sees the good frames only; what follows them is dropped when
   * the check stopped on a violation or a CLOSE. */
  if (answered) {
    uint8_t frame[14 + 125];
    memcpy(frame, c->recv.buf + pos, f.header_len + (size_t) f.len);
    c->recv.len = pos;
    if (pos > ofs) mg_ws_cb(c, MG_EV_READ, ev_data);
    if (!c->is_closing) cym_ws_closed(c, frame, &f);
    return;
  }
  if (err != NULL || echoed) c->recv.len = pos;
  ws->flags = (uint8_t) (flags | (ws->flags & CYM_WS_CLOSE_SENT));
  ws->utf8 = utf8;
  ws->msg_len = (uint32_t) msg_len;
  if (pos > ofs) mg_ws_cb(c, MG_EV_READ, ev_data);
  /* only now: handlers of the frames before the CLOSE may still send */
  if (echoed) cym_ws_close_sent(c);
  if (err != NULL) cym_ws_fail(c, code, err);
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
    return;
  }
  if (ev == MG_EV_WS_MSG) {
    /* A reassembled message carries its first frame's header byte, FIN
     * clear; report it as whole, like a single frame (0x81 or 0x82).  The
     * protocol handler runs before the user's, so this is what they see. */
    ((struct mg_ws_message *) ev_data)->flags |= 0x80;
    return;
  }
  if (ev != MG_EV_READ) return;
  if (c->is_draining || c->is_closing) {
    c->recv.len = 0; /* closing: what the peer sends no longer matters */
    return;
  }
  if (c->is_client && !c->is_websocket) {
    if (mg_ws_client_handshake(c)) return; /* response not complete yet */
    if (!c->is_websocket || c->is_closing || c->is_draining) return;
  }
  cym_ws_read(c, ev_data);
}

static void cym_ws_adopt(struct mg_connection *c) {
  memset(cym_ws_of(c), 0, sizeof(struct cym_ws));
  c->pfn = cym_ws_cb;
}

/* ---- calls from Python ---------------------------------------------------- */

/* mg_ws_upgrade with the extra header lines passed through a fixed "%s"
 * (NULL for none).  Returns 1 once upgraded (MG_EV_WS_OPEN has fired), 0
 * when Mongoose answered 426, CYM_E_IS_WS when already a WebSocket. */
int cym_ws_upgrade(struct mg_connection *c, struct mg_http_message *hm,
                   const char *headers) {
  if (c->is_websocket) return CYM_E_IS_WS;
  memset(cym_ws_of(c), 0, sizeof(struct cym_ws));
  if (headers != NULL) {
    mg_ws_upgrade(c, hm, "%s", headers);
  } else {
    mg_ws_upgrade(c, hm, NULL);
  }
  if (!c->is_websocket) return 0;
  if (c->pfn == mg_ws_cb) c->pfn = cym_ws_cb;
  /* http_cb is still looping over this buffer: stop it from reading any
   * frames that follow the request as HTTP (see cym_ws_cb). */
  c->is_resp = 1;
  return 1;
}

/* A client made by mg_ws_connect: take over its protocol handler. */
void cym_ws_client(struct mg_connection *c) {
  if (c->pfn == mg_ws_cb) cym_ws_adopt(c);
}

/* The status code of the peer's CLOSE frame, 0 before one arrived. */
int cym_ws_peer_code(struct mg_connection *c) {
  return c->is_websocket ? cym_ws_of(c)->peer_code : 0;
}

int cym_ws_send(struct mg_connection *c, const char *buf, size_t len, int op) {
  if (!c->is_websocket) return CYM_E_NOT_WS;
  if (cym_ws_of(c)->flags & CYM_WS_CLOSE_SENT) return CYM_E_WS_CLOSING;
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
