/* The WSGI environ and the ASGI scope read a whole request head in one
 * call (cymongoose/_http_request.py): on CPython each cffi call and each
 * struct field read cost more than copying every field here. */

/* Appends s and a NUL separator to buf (room checked by the caller),
 * ASCII letters lowercased with lower; 0 when s holds a NUL of its own
 * (the separator would be ambiguous). */
static int cym_head_put(char *buf, size_t *n, const struct mg_str *s, int lower) {
  size_t i;
  if (s->len > 0) {
    if (memchr(s->buf, 0, s->len) != NULL) return 0;
    memcpy(buf + *n, s->buf, s->len);
    if (lower) {
      for (i = *n; i < *n + s->len; i++) {
        if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char) (buf[i] + 32);
      }
    }
  }
  *n += s->len;
  buf[(*n)++] = '\0';
  return 1;
}

/* Copies method, uri, query, proto, then each header's name and value,
 * into buf as NUL-separated fields; with lower_names the names come
 * lowercased (as ASGI wants them).  hm is the message's address, as the
 * dispatcher's event views hold it.  Returns the bytes the fields take
 * with their separators: when that is more than size nothing was copied
 * (call again with a larger buf).  -1 when a field holds a NUL byte (the
 * caller then reads the fields one by one). */
long cym_http_head(uintptr_t hm_addr, char *buf, size_t size, int lower_names) {
  const struct mg_http_message *hm = (const struct mg_http_message *) hm_addr;
  size_t need = hm->method.len + hm->uri.len + hm->query.len + hm->proto.len + 4, n = 0, i;
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    need += hm->headers[i].name.len + hm->headers[i].value.len + 2;
  }
  if (need > size) return (long) need;
  if (!cym_head_put(buf, &n, &hm->method, 0) || !cym_head_put(buf, &n, &hm->uri, 0) ||
      !cym_head_put(buf, &n, &hm->query, 0) || !cym_head_put(buf, &n, &hm->proto, 0)) {
    return -1;
  }
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    if (!cym_head_put(buf, &n, &hm->headers[i].name, lower_names) ||
        !cym_head_put(buf, &n, &hm->headers[i].value, 0)) {
      return -1;
    }
  }
  return (long) n;
}

/* 1 when the request asks for a WebSocket upgrade (Upgrade: websocket). */
int cym_http_wants_ws(uintptr_t hm_addr) {
  struct mg_str *v = mg_http_get_header((struct mg_http_message *) hm_addr, "Upgrade");
  return v != NULL && mg_strcasecmp(*v, mg_str("websocket")) == 0;
}
