/* Utilities and the log sink: cymongoose/_csrc/utils.c. */

int cym_util_json_tok(const char *buf, size_t len, const char *path,
                      int *toklen);
int cym_util_json_num(const char *buf, size_t len, const char *path,
                      double *v);
int cym_util_json_bool(const char *buf, size_t len, const char *path, int *v);
long cym_util_json_long(const char *buf, size_t len, const char *path,
                        long dflt);
long cym_util_url_part(const char *url, int which, size_t *len);
unsigned cym_util_url_port(const char *url);
int cym_util_url_is_ssl(const char *url);
size_t cym_util_url_encode(const char *s, size_t n, char *buf, size_t len);
long cym_util_http_var(const char *buf, size_t len, const char *name,
                       size_t name_len, size_t *vlen);
size_t cym_util_multipart(const char *buf, size_t len, size_t ofs,
                          size_t *offs);
int cym_util_match(const char *s, size_t slen, const char *p, size_t plen);
void cym_util_md5(const char *buf, size_t len, unsigned char *out);
void cym_util_sha1(const char *buf, size_t len, unsigned char *out);
void cym_util_sha256(const char *buf, size_t len, unsigned char *out);
void cym_util_hmac_sha256(const char *key, size_t klen, const char *buf,
                          size_t len, unsigned char *out);
size_t cym_util_b64_encode(const char *buf, size_t len, char *out,
                           size_t outlen);
size_t cym_util_b64_decode(const char *buf, size_t len, char *out,
                           size_t outlen);
uint32_t cym_util_crc32(uint32_t crc, const char *buf, size_t len);
int cym_util_random(char *buf, size_t len);
void cym_util_random_str(char *buf, size_t len);

/* Mongoose's log lines, one call per line, to the "cymongoose" logger. */
extern "Python" void _cym_log_line(const char *buf, size_t len);
void cym_log_install(void);
