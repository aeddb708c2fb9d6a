/* The WSGI environ and the ASGI scope read a whole request head in one
 * call (cymongoose/_http_request.py): on CPython each cffi call and each
 * struct field read cost more than copying every field here. */

/* Appends s and a NUL separator to buf; 0 when it does not fit or s holds
 * a NUL of its own (the separator would be ambiguous). */
static int cym_head_put(char *buf, size_t size, size_t *n, const struct mg_str *s) {
  if (*n + s->len + 1 > size) return 0;
  if (s->len > 0) {
    if (memchr(s->buf, 0, s->len) != NULL) return 0;
    memcpy(buf + *n, s->buf, s->len);
  }
  *n += s->len;
  buf[(*n)++] = '\0';
  return 1;
}

/* Copies method, uri, query, proto, then each header's name and value,
 * into buf as NUL-separated fields.  Returns the length without the last
 * separator, or -1 when buf is too small or a field holds a NUL byte (the
 * caller then reads the fields one by one). */
long cym_http_head(const struct mg_http_message *hm, char *buf, size_t size) {
  size_t n = 0, i;
  if (!cym_head_put(buf, size, &n, &hm->method) || !cym_head_put(buf, size, &n, &hm->uri) ||
      !cym_head_put(buf, size, &n, &hm->query) || !cym_head_put(buf, size, &n, &hm->proto)) {
    return -1;
  }
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    if (!cym_head_put(buf, size, &n, &hm->headers[i].name) ||
        !cym_head_put(buf, size, &n, &hm->headers[i].value)) {
      return -1;
    }
  }
  return (long) n - 1;
}
