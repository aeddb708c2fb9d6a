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
