/* DNS, SNTP and raw TCP/UDP helpers (spec 4.14, 4.15). */

/* mg_resolve() on a connection that already owns a socket would open a
 * second one and leak the first, still registered with the poller under a
 * pointer to this connection (a use-after-free once it closes).  So a
 * pending lookup is cancelled and an existing socket is released first.
 * Returns CYM_E_STATE, doing nothing, for a client still inside the MG_EV_OPEN of
 * its creation: mg_connect() resolves the URL itself right after, and would
 * open a second socket over the one made here. */
int cym_net_resolve(struct mg_connection *c, const char *url) {
  if (c->is_client && !c->is_resolving && c->rem.port == 0 &&
      FD(c) == MG_INVALID_SOCKET) {
    return CYM_E_STATE;
  }
  mg_resolve_cancel(c);
  if (FD(c) != MG_INVALID_SOCKET) {
#if MG_ENABLE_EPOLL
    epoll_ctl(c->mgr->epoll_fd, EPOLL_CTL_DEL, FD(c), NULL);
#endif
    closesocket(FD(c));
    c->fd = (void *) (size_t) MG_INVALID_SOCKET;
    c->is_connecting = 0;
    c->is_readable = c->is_writable = 0;
  }
  mg_resolve(c, url);
  return 0;
}

/* Raw connections only: a protocol handler (HTTP, WebSocket, MQTT, SNTP)
 * consumes its own input.  Returns the number of bytes removed, or
 * CYM_E_STATE. */
long cym_net_consume(struct mg_connection *c, size_t len) {
  if (c->pfn != NULL) return CYM_E_STATE;
  return (long) mg_iobuf_del(&c->recv, 0, len);
}

/* Points the manager at another DNS server (mgr->dns4, which with
 * vendor/patches/0001 answers both the A and the AAAA queries; its URL may
 * be an IPv6 address).  An open connection to the old server is closed (now,
 * or at the end of the current poll when called from inside it), so the
 * next lookup connects to the new one. */
void cym_net_set_dns(struct mg_mgr *mgr, const char *url, int inside) {
  struct mg_connection *c = mgr->dns4.c;
  mgr->dns4.url = url;
  if (c == NULL) return;
  mgr->dns4.c = NULL;
  if (inside) {
    c->is_closing = 1;
  } else {
    close_conn(c);
  }
}

const char *cym_net_dns(struct mg_mgr *mgr) { return mgr->dns4.url; }

/* Sets the lookup timeout when ms >= 0; returns the timeout in force. */
int cym_net_dns_timeout(struct mg_mgr *mgr, int ms) {
  if (ms >= 0) mgr->dnstimeout = ms;
  return mgr->dnstimeout;
}
