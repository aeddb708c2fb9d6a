/* The utility functions (cymongoose/utils.py) and the log sink.
 *
 * Mongoose takes struct mg_str by value and returns pointers into its
 * input; these helpers take (pointer, length) pairs and report offsets into
 * the caller's buffer instead, so Python slices its own bytes and no
 * pointer outlives the call (on PyPy a bytes argument is only guaranteed to
 * stay put for the duration of the call). */

int cym_util_json_tok(const char *buf, size_t len, const char *path,
                      int *toklen) {
  return mg_json_get(mg_str_n(buf, len), path, toklen);
}

int cym_util_json_num(const char *buf, size_t len, const char *path,
                      double *v) {
  return mg_json_get_num(mg_str_n(buf, len), path, v) ? 1 : 0;
}

int cym_util_json_bool(const char *buf, size_t len, const char *path,
                       int *v) {
  bool b = false;
  if (!mg_json_get_bool(mg_str_n(buf, len), path, &b)) return 0;
  *v = b ? 1 : 0;
  return 1;
}

long cym_util_json_long(const char *buf, size_t len, const char *path,
                        long dflt) {
  return mg_json_get_long(mg_str_n(buf, len), path, dflt);
}

/* which: 0 host, 1 user, 2 pass, 3 uri.  Returns the offset of the part in
 * url and its length, or -1 when Mongoose answers with a string that is not
 * part of url (the "/" of a URL without a path). */
long cym_util_url_part(const char *url, int which, size_t *len) {
  struct mg_str s = mg_str_n(NULL, 0);
  switch (which) {
    case 0: s = mg_url_host(url); break;
    case 1: s = mg_url_user(url); break;
    case 2: s = mg_url_pass(url); break;
    case 3: s = mg_str(mg_url_uri(url)); break;
    default: break;
  }
  *len = s.len;
  if (s.len == 0) return 0;
  if (s.buf < url || s.buf > url + strlen(url)) return -1;
  return (long) (s.buf - url);
}

size_t cym_util_url_encode(const char *s, size_t n, char *buf, size_t len) {
  return mg_url_encode(s, n, buf, len);
}

unsigned cym_util_url_port(const char *url) { return mg_url_port(url); }
int cym_util_url_is_ssl(const char *url) { return mg_url_is_ssl(url) ? 1 : 0; }

/* Offset of the value of `name` in buf, or -1 when absent. */
long cym_util_http_var(const char *buf, size_t len, const char *name,
                       size_t name_len, size_t *vlen) {
  struct mg_str v = mg_http_var(mg_str_n(buf, len), mg_str_n(name, name_len));
  *vlen = v.len;
  return v.buf == NULL ? -1 : (long) (v.buf - buf);
}

/* offs[6]: name, filename and body as (offset, length) pairs. */
size_t cym_util_multipart(const char *buf, size_t len, size_t ofs,
                          size_t *offs) {
  struct mg_http_part part;
  size_t next;
  if (ofs >= len) return 0; /* Mongoose's own bound check overflows near SIZE_MAX */
  next = mg_http_next_multipart(mg_str_n(buf, len), ofs, &part);
  if (next == 0) return 0;
  offs[0] = part.name.len ? (size_t) (part.name.buf - buf) : 0;
  offs[1] = part.name.len;
  offs[2] = part.filename.len ? (size_t) (part.filename.buf - buf) : 0;
  offs[3] = part.filename.len;
  offs[4] = part.body.len ? (size_t) (part.body.buf - buf) : 0;
  offs[5] = part.body.len;
  return next;
}

/* Match only: Mongoose's capture array overflows when a "*" or "#" is
 * followed by several wildcards (each retry past the star advances it
 * again), so captures are computed in Python (cymongoose/utils.py). */
int cym_util_match(const char *s, size_t slen, const char *p, size_t plen) {
  return mg_match(mg_str_n(s, slen), mg_str_n(p, plen), NULL) ? 1 : 0;
}

void cym_util_md5(const char *buf, size_t len, unsigned char *out) {
  mg_md5_ctx ctx;
  mg_md5_init(&ctx);
  mg_md5_update(&ctx, (const unsigned char *) buf, len);
  mg_md5_final(&ctx, out);
}

void cym_util_sha1(const char *buf, size_t len, unsigned char *out) {
  mg_sha1_ctx ctx;
  mg_sha1_init(&ctx);
  mg_sha1_update(&ctx, (const unsigned char *) buf, len);
  mg_sha1_final(out, &ctx);
}

void cym_util_sha256(const char *buf, size_t len, unsigned char *out) {
  mg_sha256(out, (uint8_t *) buf, len);
}

/* HMAC-SHA256 (RFC 2104) on Mongoose's SHA-256.  Not mg_hmac_sha256():
 * Mongoose 7.23 also hashes a key of exactly 64 bytes, which RFC 2104
 * uses as it is, so such keys gave wrong MACs. */
void cym_util_hmac_sha256(const char *key, size_t klen, const char *buf,
                          size_t len, unsigned char *out) {
  mg_sha256_ctx ctx;
  uint8_t k[64] = {0}, pad[64];
  size_t i;
  if (klen > sizeof(k)) {
    mg_sha256_init(&ctx);
    mg_sha256_update(&ctx, (const unsigned char *) key, klen);
    mg_sha256_final(k, &ctx);
  } else if (klen > 0) {
    memcpy(k, key, klen);
  }
  for (i = 0; i < sizeof(pad); i++) pad[i] = (uint8_t) (k[i] ^ 0x36);
  mg_sha256_init(&ctx);
  mg_sha256_update(&ctx, pad, sizeof(pad));
  mg_sha256_update(&ctx, (const unsigned char *) buf, len);
  mg_sha256_final(out, &ctx);
  for (i = 0; i < sizeof(pad); i++) pad[i] = (uint8_t) (k[i] ^ 0x5c);
  mg_sha256_init(&ctx);
  mg_sha256_update(&ctx, pad, sizeof(pad));
  mg_sha256_update(&ctx, out, 32);
  mg_sha256_final(out, &ctx);
}

size_t cym_util_b64_encode(const char *buf, size_t len, char *out,
                           size_t outlen) {
  return mg_base64_encode((const unsigned char *) buf, len, out, outlen);
}

size_t cym_util_b64_decode(const char *buf, size_t len, char *out,
                           size_t outlen) {
  return mg_base64_decode(buf, len, out, outlen);
}

uint32_t cym_util_crc32(uint32_t crc, const char *buf, size_t len) {
  return mg_crc32(crc, buf, len);
}

int cym_util_random(char *buf, size_t len) { return mg_random(buf, len) ? 1 : 0; }

void cym_util_random_str(char *buf, size_t len) { mg_random_str(buf, len); }

/* ---- Mongoose's log output goes to Python's logging, one line at a time.
 * Mongoose hands its log function one character at a time; a line is
 * buffered here (per thread: managers may poll on different threads) and
 * crosses into Python once, at its end.  mg_hexdump() writes even when
 * mg_log_level is MG_LL_NONE; such output is dropped here. */

#define CYM_LOG_LINE 1024

static void _cym_log_line(const char *buf, size_t len);

static __thread char cym_log_buf[CYM_LOG_LINE];
static __thread size_t cym_log_len;

static void cym_log_char(char ch, void *param) {
  size_t n;
  (void) param;
  if (mg_log_level <= MG_LL_NONE) {
    cym_log_len = 0;
    return;
  }
  if (ch != '\n' && cym_log_len < sizeof(cym_log_buf)) {
    cym_log_buf[cym_log_len++] = ch;
    return;
  }
  /* End of line, or a full buffer: what follows continues as a new line.
   * The length is reset before Python runs, which copies the line first,
   * so a log call nested inside a logging handler starts cleanly. */
  n = cym_log_len;
  cym_log_len = 0;
  if (n > 0 && cym_log_buf[n - 1] == '\r') n--;
  cym_python_ran();
  _cym_log_line(cym_log_buf, n);
  if (ch != '\n') cym_log_buf[cym_log_len++] = ch;
}

void cym_log_install(void) { mg_log_set_fn(cym_log_char, NULL); }

