/* An asyncio loop polls Mongoose when Mongoose's own epoll descriptor is
 * readable (cymongoose/_loop_poller.py).  Some work is not announced by
 * that descriptor, so the poller asks here whether to poll again at once. */

/* Mongoose's epoll descriptor, or -1 in a build without epoll. */
int cym_loop_fd(struct mg_mgr *mgr) {
#if MG_ENABLE_EPOLL
  return mgr->epoll_fd;
#else
  (void) mgr;
  return -1;
#endif
}

/* 1 when the next mg_mgr_poll has work that no descriptor will announce:
 * a connection to close (or drained and ready to close), or TLS bytes
 * already decrypted or buffered.  Mongoose's own poll checks the same
 * conditions to skip waiting. */
int cym_loop_pending(struct mg_mgr *mgr) {
  struct mg_connection *c;
  for (c = mgr->conns; c != NULL; c = c->next) {
    if (c->is_closing || (c->is_draining && c->send.len == 0)) return 1;
    if (c->is_tls && (c->rtls.len > 0 || mg_tls_pending(c) > 0)) return 1;
  }
  return 0;
}

/* Writes c's queued output to its socket now, between polls, as the next
 * poll would (without its MG_EV_WRITE, which no whole response waits for).
 * Returns 0 when the socket took all of it and nothing else is left for a
 * poll to do on c; 1 when a poll is still needed: bytes left over, a
 * connection to drain or close, TLS (whose records Mongoose writes), or a
 * socket error, which that poll reports. */
int cym_send_now(struct mg_connection *c) {
  long n;
  if (c->is_tls || c->is_closing || c->is_resolving || c->is_connecting ||
      c->is_listening || c->prof.align != 0 || FD(c) == MG_INVALID_SOCKET)
    return 1;
  if (c->send.len > 0) {
    n = mg_io_send(c, c->send.buf, c->send.len);
    if (n == MG_IO_ERR) return 1;
    if (n > 0) {
      mg_iobuf_del(&c->send, 0, (size_t) n);
      cym_iobufs_touch(c);
    }
  }
  return c->send.len > 0 || c->is_draining;
}
