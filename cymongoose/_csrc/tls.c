/* TLS for Connection.tls_init/tls_free (cymongoose/tls.py).
 *
 * Besides calling mg_tls_init/mg_tls_free, this file makes handshake
 * failures visible.  Mongoose's built-in stack closes *without* MG_EV_ERROR
 * when the peer hangs up during the handshake (read_conn only sets
 * is_closing), stalls on bytes that are not TLS, says "socket error" for a
 * reset and never names an alert.  So a TLS connection gets a wrapper around
 * the usual trampoline cym_ev as its fn, and which wrapper is installed is
 * the connection's TLS state:
 *
 *   cym_tls_hs_ev    handshake running, no error reported yet: reports a
 *                    hang-up and non-TLS bytes, fires MG_EV_TLS_HS on
 *                    servers (Mongoose's built-in stack does so only on
 *                    clients)
 *   cym_tls_ev       handshake over or failed: only error texts are enriched
 *   cym_tls_free_ev  tls_free() was called inside the event loop: the TLS
 *                    state is freed at the connection's next MG_EV_POLL
 *
 * The function pointer is the state, so nothing is stored in c->data (which
 * the HTTP code uses) or in c->fn_data (which cym_set_state overwrites). */


static void cym_tls_free_ev(struct mg_connection *c, int ev, void *ev_data);

#if MG_TLS == MG_TLS_OPENSSL
/* tls_openssl.c: what cym_tls_init adds to Mongoose's OpenSSL glue, and the
 * handshake errors it names. */
static void cym_tls_openssl_setup(struct mg_connection *c,
                                  const struct mg_tls_opts *opts);
static const char *cym_tls_openssl_error(struct mg_connection *c,
                                         const char *msg, char *buf,
                                         size_t len);
#endif

#if MG_TLS == MG_TLS_BUILTIN
static const char *cym_tls_alert_name(unsigned char desc) {
  switch (desc) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 113: return "bad_certificate_status_response";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "unknown";
  }
}
#endif

/* Forwards MG_EV_ERROR with a clearer text where Mongoose's own is terse.
 * Both alert errors fire while the alert record is still at the head of
 * c->rtls, its level and description at offsets 5 and 6 (decrypted in
 * place for "TLS Fatal alert"). */
static void cym_tls_error(struct mg_connection *c, const char *msg) {
  char buf[320];
  const char *hint = NULL;
  if (msg == NULL) msg = "TLS error";
#if MG_TLS == MG_TLS_OPENSSL
  (void) hint;
  cym_ev(c, MG_EV_ERROR, (void *) cym_tls_openssl_error(c, msg, buf, sizeof(buf)));
#else
  if ((strcmp(msg, "TLS error alert") == 0 ||
       strcmp(msg, "TLS Fatal alert") == 0) &&
      c->rtls.len >= 7) {
    unsigned char desc = c->rtls.buf[6];
    mg_snprintf(buf, sizeof(buf), "%s from peer: %s (%d)", msg,
                cym_tls_alert_name(desc), (int) desc);
    cym_ev(c, MG_EV_ERROR, buf);
    return;
  }
  if (strcmp(msg, "socket error") == 0 && c->is_tls_hs && !c->is_connecting) {
    /* A peer that rejects our ClientHello often closes with our
     * ChangeCipherSpec unread, which makes its kernel send a reset. */
    msg = "TLS handshake failed: the peer reset the connection";
    hint = "socket error; did it refuse our TLS 1.3 ClientHello?";
  } else if (strcmp(msg, "bad client hello") == 0) {
    hint = "the client must offer TLS 1.3 with an X25519 key share";
  } else if (strcmp(msg, "not a client hello packet") == 0) {
    hint = "the client did not start a TLS handshake";
  } else if (strcmp(msg, "not a server hello packet") == 0) {
    hint = "the server did not answer with a TLS 1.3 ServerHello";
  } else if (strcmp(msg, "failed to verify hostname") == 0) {
    hint = "the certificate names neither TlsOpts.name nor the peer's IP";
  } else if (strcmp(msg, "failed to verify CA") == 0 ||
             strcmp(msg, "failed to find issuing CA in bundle") == 0) {
    hint = "the peer's certificate is not signed by TlsOpts.ca";
  }
  if (hint == NULL) {
    cym_ev(c, MG_EV_ERROR, (void *) msg);
  } else {
    mg_snprintf(buf, sizeof(buf), "%s (%s)", msg, hint);
    cym_ev(c, MG_EV_ERROR, buf);
  }
#endif
}

static void cym_tls_ev(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_ERROR) {
    cym_tls_error(c, (const char *) ev_data);
  } else {
    cym_ev(c, ev, ev_data);
  }
}

/* Mongoose waits for a whole record before it looks at one, so a peer that
 * sends bytes that are not TLS (say "GET / HTTP/1.1") stalls the handshake
 * as long as the length field its bytes happen to hold.  The header shows
 * it at once: content type 20..23, version 3.x, at most 2^14 + 256 bytes. */
static bool cym_tls_bad_header(const struct mg_connection *c) {
  const unsigned char *h = c->rtls.buf;
  size_t n = c->rtls.len;
  if (n >= 1 && (h[0] < 20 || h[0] > 23)) return true;
  if (n >= 2 && h[1] != 3) return true;
  return n >= 5 && ((size_t) h[3] << 8 | h[4]) > 16384 + 256;
}

/* Watches a handshake.  Who closed a connection during it?  Mongoose sets
 * is_closing and closes in the same step when the peer hangs up, so no
 * event sees the flag before MG_EV_CLOSE.  Any other close was visible
 * earlier: the flag set at an event's entry (Manager.close, a close() made
 * elsewhere) or during a handler (close(), drain()), an MG_EV_ERROR, or
 * MG_EV_CLOSE without the flag (Connection.close() outside the loop closes
 * at once).  Also fires MG_EV_TLS_HS on servers, which Mongoose's built-in
 * stack does only on clients: the first event after the handshake ends
 * (MG_EV_POLL, before any data is read) brings it. */
static void cym_tls_hs_ev(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_ERROR) {
    c->fn = cym_tls_ev;
    cym_tls_error(c, (const char *) ev_data);
    return;
  }
  if (ev == MG_EV_CLOSE) {
    c->fn = cym_tls_ev;
    if (c->is_closing && c->is_tls_hs) {
      cym_ev(c, MG_EV_ERROR,
             "TLS handshake failed: the peer closed the connection");
    }
    cym_ev(c, ev, ev_data);
    return;
  }
  if (c->is_closing || c->is_draining) {
    c->fn = cym_tls_ev;  // closed by us, not by the peer
  } else if (!c->is_tls_hs) {
    c->fn = cym_tls_ev;  // handshake over
#if MG_TLS == MG_TLS_BUILTIN  // OpenSSL's glue fires it on both sides
    if (!c->is_client) cym_ev(c, MG_EV_TLS_HS, NULL);
#endif
  } else if (MG_TLS == MG_TLS_BUILTIN && ev == MG_EV_POLL &&
             cym_tls_bad_header(c)) {  // OpenSSL names it itself
    mg_error(c, "TLS handshake failed: the peer does not speak TLS");
  }
  cym_ev(c, ev, ev_data);
  if (c->fn == cym_tls_hs_ev && (c->is_closing || c->is_draining)) {
    c->fn = cym_tls_ev;
  }
}

static void cym_tls_drop(struct mg_connection *c) {
  mg_tls_free(c);
  c->is_tls = c->is_tls_hs = c->is_tls_throttled = 0;
  if (c->fn == cym_tls_ev || c->fn == cym_tls_hs_ev || c->fn == cym_tls_free_ev) {
    c->fn = cym_ev;
  }
}

/* MG_EV_POLL fires from mg_mgr_poll itself, never from inside the TLS code,
 * so freeing there cannot pull the state from under a running handshake. */
static void cym_tls_free_ev(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_POLL) cym_tls_drop(c);
  if (ev == MG_EV_CLOSE) c->fn = cym_ev;  // mg_close_conn frees the state
  cym_ev(c, ev, ev_data);
}

int cym_tls_init(struct mg_connection *c, const char *ca, size_t ca_len,
                 const char *cert, size_t cert_len, const char *key,
                 size_t key_len, const char *name, size_t name_len,
                 int skip_verification) {
  struct mg_tls_opts opts;
  if (c->fn == cym_tls_free_ev) return CYM_E_TLS_FREE_PENDING;
  if (c->tls != NULL) return CYM_E_TLS_ALREADY;
  memset(&opts, 0, sizeof(opts));
  if (ca_len > 0) opts.ca = mg_str_n(ca, ca_len);
  if (cert_len > 0) opts.cert = mg_str_n(cert, cert_len);
  if (key_len > 0) opts.key = mg_str_n(key, key_len);
  if (name_len > 0) opts.name = mg_str_n(name, name_len);
  opts.skip_verification = skip_verification != 0;
  mg_tls_init(c, &opts);  // copies what it keeps; errors fire inside
#if MG_TLS == MG_TLS_OPENSSL
  if (c->tls != NULL) cym_tls_openssl_setup(c, &opts);
#endif
  /* Not on a listener: accepted connections inherit its fn.  Its TLS state
   * is never used (accepted connections need their own tls_init). */
  if (c->tls != NULL && !c->is_listening &&
      (c->fn == cym_ev || c->fn == cym_tls_ev)) {
    c->fn = c->is_closing ? cym_tls_ev : cym_tls_hs_ev;
  }
  return CYM_OK;
}

/* At once when asked (outside the event loop) and on listeners, whose TLS
 * state no handshake uses; otherwise at the connection's next poll. */
void cym_tls_free(struct mg_connection *c, int now) {
  if (c->tls == NULL || now || c->is_listening) {
    cym_tls_drop(c);
  } else {
    c->fn = cym_tls_free_ev;
  }
}

const char *cym_tls_backend(void) {
  return MG_TLS == MG_TLS_OPENSSL ? "openssl" : "builtin";
}

#if MG_TLS == MG_TLS_BUILTIN
/* 1 when Mongoose's TLS can sign with this private key (canonical PEM from
 * cymongoose/_pem.py), 0 when not.  EC keys always can.  For RSA it signs
 * once through Mongoose's own path: in 7.23 RSA-CRT signing fails for
 * every key (a bit-length check on p*q never holds), so each handshake
 * would end in "TLS OOM"; a fixed Mongoose passes this test. */
static int cym_tls_key_signs(const char *pem, size_t len) {
  struct mg_str der = mg_str_n(NULL, 0), key = mg_str_n(pem, len);
  struct tls_data *tls;
  uint8_t em[512], sig[512], ec_key[32];
  const uint8_t *n;
  size_t nlen;
  int ok = 0;
  if (mg_parse_pem(key, mg_str_s("EC PRIVATE KEY"), &der) == 0) {
    mg_free((void *) der.buf);
    return 1;
  }
  if ((tls = (struct tls_data *) mg_calloc(1, sizeof(*tls))) == NULL) return 0;
  if (mg_parse_pem(key, mg_str_s("RSA PRIVATE KEY"), &der) == 0) {
    ok = mg_rsa_parse_key((const uint8_t *) der.buf, der.len, &tls->rsa) == 0;
  } else if (mg_parse_pem(key, mg_str_s("PRIVATE KEY"), &der) == 0) {
    ok = mg_parse_pkcs8_key((const uint8_t *) der.buf, der.len, &tls->rsa,
                            ec_key) == 0;
  }
  if (ok && tls->rsa.n.len > 0) {
    n = (const uint8_t *) tls->rsa.n.buf;
    nlen = mg_rsa_trim_len(&n, tls->rsa.n.len);
    ok = nlen > 0 && nlen <= sizeof(em);
    if (ok) {
      memset(em, 0, nlen);
      em[nlen - 1] = 1;  // any value below the modulus will do
      ok = mg_tls_rsa_sign(tls, em, nlen, sig);
    }
  }
  mg_free((void *) der.buf);
  mg_free(tls);
  return ok;
}

/* NULL when the built-in stack can use this certificate and key, else why
 * not.  Only RSA signing needs checking: _pem.py checked the rest. */
const char *cym_tls_check(const char *cert, size_t cert_len, const char *key,
                          size_t key_len, char *err, size_t err_len) {
  (void) cert, (void) cert_len, (void) err, (void) err_len;
  if (key_len > 0 && !cym_tls_key_signs(key, key_len)) {
    return "TlsOpts.key: Mongoose's built-in TLS cannot sign with this RSA key (Mongoose "
           "7.23's RSA signing fails for every key); use an EC P-256 key, or "
           "build with the OpenSSL backend";
  }
  return NULL;
}
#endif
