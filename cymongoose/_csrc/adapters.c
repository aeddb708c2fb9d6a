/* C helpers of the WSGI and ASGI servers (cymongoose/_httpcore.py).
 *
 * The servers answer requests from worker threads or an asyncio loop, so a
 * response is written over several poll iterations and must end by clearing
 * Mongoose's "response in progress" mark (is_resp), or keep-alive requests
 * stall.  Large request bodies are taken over from
 * Mongoose's HTTP parser and streamed, instead of being buffered whole up to
 * MG_MAX_RECV_SIZE.  Compiled in the same unit as mongoose.c, so these use
 * its static http_cb and socket macros. */

#define CYM_AD_CHUNK 1 /* frame the data as one HTTP chunk */
#define CYM_AD_END 2   /* the response ends here: clear is_resp */

/* Appends response bytes: raw, or as one chunk; with CYM_AD_END the
 * response is complete (a chunked one gets its terminating chunk). */
void cym_adapters_write(struct mg_connection *c, const char *buf, size_t len,
                        int how) {
  if (how & CYM_AD_CHUNK) {
    if (len > 0) mg_http_write_chunk(c, buf, len);
    if (how & CYM_AD_END) mg_http_write_chunk(c, "", 0);
  } else if (len > 0 && !mg_send(c, buf, len)) {
    mg_error(c, "OOM");
  }
  if (how & CYM_AD_END) c->is_resp = 0;
}

static void cym_limits_body_taken(struct mg_connection *c);

/* Called from MG_EV_HTTP_HDRS: drops the parsed head from the receive
 * buffer.  http_cb sees the buffer change and detaches itself, so the body
 * bytes that follow reach the handler as MG_EV_READ. */
void cym_adapters_take_body(struct mg_connection *c,
                            struct mg_http_message *hm) {
  size_t end = (size_t) (hm->body.buf - (char *) c->recv.buf);
  if (end <= c->recv.len) mg_iobuf_del(&c->recv, 0, end);
  cym_limits_body_taken(c);
}

/* How many body bytes of the request whose head hm describes are already
 * in the receive buffer. */
size_t cym_adapters_buffered(struct mg_connection *c,
                             struct mg_http_message *hm) {
  size_t end = (size_t) (hm->body.buf - (char *) c->recv.buf);
  return end <= c->recv.len ? c->recv.len - end : 0;
}

/* Removes the first n received bytes (they belong to a streamed body). */
void cym_adapters_consume(struct mg_connection *c, size_t n) {
  if (n > c->recv.len) n = c->recv.len;
  if (n > 0) mg_iobuf_del(&c->recv, 0, n);
}

/* The streamed body is complete: hand the connection back to the HTTP
 * parser, with the response in progress so that pipelined requests wait
 * until it ends. */
void cym_adapters_body_done(struct mg_connection *c) {
  c->pfn = http_cb;
  c->pfn_data = NULL;
  c->is_resp = 1;
}

/* Stops (on != 0) or resumes reading from the socket.  is_full alone makes
 * a level-triggered epoll report the pending data on every poll, a busy
 * loop, so the socket also leaves the epoll set while paused. */
void cym_adapters_pause(struct mg_connection *c, int on) {
  if (c->is_full == (on ? 1u : 0u)) return;
  c->is_full = on ? 1 : 0;
#if MG_ENABLE_EPOLL
  if (FD(c) != MG_INVALID_SOCKET) {
    if (on) {
      epoll_ctl(c->mgr->epoll_fd, EPOLL_CTL_DEL, FD(c), NULL);
    } else {
      MG_EPOLL_ADD(c);
#ifdef CYM_EPOLL_WRITE_FIRST
      /* Registered for EPOLLIN alone, as the interest mark must say
       * (patch 0081): queued output is written first by the next poll. */
      c->prof.align = 0;
#else
      if (c->send.len > 0) MG_EPOLL_MOD(c, 1);
#endif
    }
  }
#endif
}

/* Closes a listener's socket but keeps the connection (and its id) alive:
 * new clients are refused while the server finishes in-flight requests,
 * and cross-thread wakeups addressed to the listener still arrive. */
void cym_adapters_unlisten(struct mg_connection *c) {
  if (!c->is_listening || FD(c) == MG_INVALID_SOCKET) return;
#if MG_ENABLE_EPOLL
  epoll_ctl(c->mgr->epoll_fd, EPOLL_CTL_DEL, FD(c), NULL);
#endif
  closesocket(FD(c));
  c->fd = (void *) (size_t) MG_INVALID_SOCKET;
}

/* Inside MG_EV_WS_CTL: when the frame being processed is a CLOSE, returns
 * its status code (1005 when it carries none) and points *reason at the
 * reason text; otherwise returns -1.  mg_ws_cb has already unmasked the
 * payload in place, at offset pfn_data of the receive buffer. */
int cym_adapters_ws_close(struct mg_connection *c, struct mg_str *reason) {
  size_t ofs = (size_t) c->pfn_data, len, hl, n;
  const uint8_t *p;
  *reason = mg_str_n(NULL, 0);
  if (ofs >= c->recv.len) return -1;
  p = c->recv.buf + ofs, len = c->recv.len - ofs;
  if (len < 2 || (p[0] & 15) != WEBSOCKET_OP_CLOSE) return -1;
  n = p[1] & 0x7f, hl = 2 + ((p[1] & 128) ? 4 : 0);
  if (n >= 126) return -1; /* control frames carry at most 125 bytes */
  if (hl + n > len) return -1;
  if (n < 2) return 1005;
  if (n > 2) *reason = mg_str_n((const char *) p + hl + 2, n - 2);
  return (p[hl] << 8) | p[hl + 1];
}
