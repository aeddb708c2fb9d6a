/* TLS (cymongoose/_csrc/tls.c): tls_init/tls_free for Connection, with a
 * handshake watcher that reports the failures Mongoose closes on silently. */

int cym_tls_init(struct mg_connection *c, const char *ca, size_t ca_len,
                 const char *cert, size_t cert_len, const char *key,
                 size_t key_len, const char *name, size_t name_len,
                 int skip_verification);
void cym_tls_free(struct mg_connection *c, int now);
const char *cym_tls_check(const char *cert, size_t cert_len, const char *key,
                          size_t key_len, char *err, size_t err_len);
const char *cym_tls_backend(void);
