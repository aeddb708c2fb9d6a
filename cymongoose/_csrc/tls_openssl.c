/* TLS on Mongoose's OpenSSL backend (MG_TLS_OPENSSL, the default build).
 *
 * Mongoose 7.23's glue (mg_tls_init) makes one SSL_CTX and SSL per
 * connection and loads cert, key and ca into them.  It leaves gaps that
 * cym_tls_openssl_setup() closes on the SSL it made, right after it:
 *
 *   - a client without ca verified nothing: it now verifies against the
 *     system trust store (OpenSSL's default paths, which honour
 *     SSL_CERT_FILE and SSL_CERT_DIR), checking TlsOpts.name, or the
 *     connected IP address when no name is set;
 *   - skip_verification was ignored: it now turns every check off;
 *   - TLS 1.2 stays the floor (Mongoose disables older versions already);
 *   - ALPN: HTTP connections offer and accept "http/1.1";
 *   - servers send no TLS 1.3 session tickets (no ticket could resume).
 *
 * Handshake failures reach Python as "TLS handshake failed: <reason>",
 * the reason taken from OpenSSL (vendor patch 0030 adds it to Mongoose's
 * "tls hs" error) or from the certificate check. */
#if MG_TLS == MG_TLS_OPENSSL

#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>

static const unsigned char cym_alpn_http11[] = "\x08http/1.1";

/* The system trust store, shared by every client SSL (X509_STORE is
 * reference counted and locks itself).  Built once per value of
 * SSL_CERT_FILE/SSL_CERT_DIR: loading the default CA file parses every
 * certificate in it, milliseconds that each connection would pay. */
static pthread_mutex_t cym_trust_lock = PTHREAD_MUTEX_INITIALIZER;
static X509_STORE *cym_trust_store;
static char *cym_trust_env;

static X509_STORE *cym_trust_default(void) {
  const char *file = getenv(X509_get_default_cert_file_env());
  const char *dir = getenv(X509_get_default_cert_dir_env());
  char *env = mg_mprintf("%d%s\n%d%s", file != NULL, file ? file : "",
                         dir != NULL, dir ? dir : "");
  X509_STORE *store = NULL;
  if (env == NULL) return NULL;
  pthread_mutex_lock(&cym_trust_lock);
  if (cym_trust_store == NULL || strcmp(env, cym_trust_env) != 0) {
    X509_STORE *fresh = X509_STORE_new();
    if (fresh != NULL && X509_STORE_set_default_paths(fresh) != 1) {
      X509_STORE_free(fresh);
      fresh = NULL;
    }
    ERR_clear_error();  // a missing default file or dir is no error
    if (fresh != NULL) {
      X509_STORE_free(cym_trust_store);  // SSLs using it keep their reference
      mg_free(cym_trust_env);
      cym_trust_store = fresh, cym_trust_env = env, env = NULL;
    }
  }
  if (cym_trust_store != NULL && X509_STORE_up_ref(cym_trust_store) == 1) {
    store = cym_trust_store;
  }
  pthread_mutex_unlock(&cym_trust_lock);
  mg_free(env);
  return store;
}

static int cym_alpn_select(SSL *ssl, const unsigned char **out,
                           unsigned char *outlen, const unsigned char *in,
                           unsigned int inlen, void *arg) {
  unsigned char *chosen = NULL;
  (void) ssl, (void) arg;
  if (SSL_select_next_proto(&chosen, outlen, cym_alpn_http11,
                            sizeof(cym_alpn_http11) - 1, in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no http/1.1 offered: carry on without ALPN
}

/* The client's host check when TlsOpts.name is empty: the certificate must
 * name the address we connected to (an IP SAN). */
static void cym_tls_check_peer_ip(SSL *ssl, const struct mg_addr *rem) {
  X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set1_ip(param, rem->addr.ip, rem->is_ip6 ? 16 : 4);
}

static void cym_tls_openssl_setup(struct mg_connection *c,
                                  const struct mg_tls_opts *opts) {
  struct mg_tls *tls = (struct mg_tls *) c->tls;
  SSL *ssl = tls->ssl;
  SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
  if (c->pfn == http_cb) {
    if (c->is_client) {
      SSL_set_alpn_protos(ssl, cym_alpn_http11, sizeof(cym_alpn_http11) - 1);
    } else {
      SSL_CTX_set_alpn_select_cb(tls->ctx, cym_alpn_select, NULL);
    }
  }
  if (!c->is_client) {
    // No TLS 1.3 session tickets: each connection has an SSL_CTX of its own,
    // so no ticket could ever resume a session, and a ticket arriving after
    // the handshake raced the websockets client, whose reader and writer
    // threads share one SSL object: it sometimes never sent its request.
#if OPENSSL_VERSION_NUMBER >= 0x10101000L
    SSL_set_num_tickets(ssl, 0);
#endif
    return;  // a server verifies clients only with ca
  }
  tls->check_name = false;    // the chain check below covers the name
  if (opts->skip_verification) {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    SSL_set1_host(ssl, NULL);
    return;
  }
  SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
  if (tls->name == NULL) cym_tls_check_peer_ip(ssl, &c->rem);
  if (opts->ca.len == 0) {
    X509_STORE *store = cym_trust_default();
    if (store == NULL) {
      mg_error(c, "TLS: cannot load the system trust store");
      return;
    }
    SSL_set1_verify_cert_store(ssl, store);
    X509_STORE_free(store);  // the SSL holds its own reference
  }
}

static const char *cym_tls_verify_hint(long verify) {
  switch (verify) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return " (the certificate does not name TlsOpts.name)";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return " (TlsOpts.name is empty and the certificate does not name the "
             "peer's IP)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return " (no CA in TlsOpts.ca, or in the system trust store when ca is "
             "empty, signed the peer's certificate)";
    default:
      return "";
  }
}

/* The text for an MG_EV_ERROR: Mongoose's "tls hs: rc R, err E[: reason]"
 * becomes "TLS handshake failed: ..." naming the reason. */
static const char *cym_tls_openssl_error(struct mg_connection *c,
                                         const char *msg, char *buf,
                                         size_t len) {
  struct mg_tls *tls = (struct mg_tls *) c->tls;
  const char *reason;
  int rc = 0, err = 0;
  long verify;
  if (tls != NULL && c->is_tls_hs && strcmp(msg, "socket error") == 0) {
    /* A peer that refuses us (our certificate, say) often resets the
     * connection with its alert still unread. */
    return "TLS handshake failed: the peer reset the connection (did it "
           "refuse our certificate?)";
  }
  if (tls == NULL || sscanf(msg, "tls hs: rc %d, err %d", &rc, &err) != 2) {
    return msg;
  }
  verify = SSL_get_verify_result(tls->ssl);
  reason = strstr(msg, "err ");
  reason = reason != NULL ? strstr(reason, ": ") : NULL;
  if (verify != X509_V_OK) {
    mg_snprintf(buf, len, "TLS handshake failed: certificate verify failed: %s%s",
                X509_verify_cert_error_string(verify),
                cym_tls_verify_hint(verify));
  } else if (reason != NULL) {
    mg_snprintf(buf, len, "TLS handshake failed: %s", reason + 2);
  } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    mg_snprintf(buf, len, "TLS handshake failed: the peer closed the connection");
  } else {
    mg_snprintf(buf, len, "TLS handshake failed (OpenSSL error %d)", err);
  }
  return buf;
}

static const char *cym_tls_ossl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r != NULL ? r : "unknown reason";
}

/* NULL when OpenSSL can use this certificate (chain) and key, else why not,
 * written to err: unreadable PEM, a key or signature too weak for OpenSSL's
 * security level, a key that does not belong to the certificate. */
const char *cym_tls_check(const char *cert, size_t cert_len, const char *key,
                          size_t key_len, char *err, size_t err_len) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  BIO *bio = NULL;
  X509 *x = NULL, *extra;
  EVP_PKEY *k = NULL;
  const char *res = NULL;
  if (ctx == NULL) {
    res = "TLS: SSL_CTX_new failed";
    goto done;
  }
  if (cert_len > 0) {
    bio = BIO_new_mem_buf(cert, (int) cert_len);
    x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (x == NULL) {
      mg_snprintf(err, err_len, "TlsOpts.cert: OpenSSL cannot read it (%s)",
                  cym_tls_ossl_reason());
      res = err;
      goto done;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
      mg_snprintf(err, err_len, "TlsOpts.cert: OpenSSL refuses it (%s)",
                  cym_tls_ossl_reason());
      res = err;
      goto done;
    }
    while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
      int ok = SSL_CTX_add0_chain_cert(ctx, extra);
      if (ok != 1) {
        X509_free(extra);
        mg_snprintf(err, err_len,
                    "TlsOpts.cert: OpenSSL refuses a chain certificate (%s)",
                    cym_tls_ossl_reason());
        res = err;
        goto done;
      }
    }
  }
  if (key_len > 0) {
    BIO_free(bio);
    bio = BIO_new_mem_buf(key, (int) key_len);
    k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (k == NULL) {
      mg_snprintf(err, err_len, "TlsOpts.key: OpenSSL cannot read it (%s)",
                  cym_tls_ossl_reason());
      res = err;
      goto done;
    }
    if (x != NULL && X509_check_private_key(x, k) != 1) {
      res = "TlsOpts.key does not match TlsOpts.cert (the certificate holds "
            "another public key)";
      goto done;
    }
  }
done:
  ERR_clear_error();
  EVP_PKEY_free(k);
  X509_free(x);
  BIO_free(bio);
  SSL_CTX_free(ctx);
  return res;
}

#endif
