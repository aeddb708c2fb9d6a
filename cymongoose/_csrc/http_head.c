/* The WSGI environ and the ASGI scope read a whole request head in one
 * call (cymongoose/_http_request.py): on CPython each cffi call and each
 * struct field read cost more than copying every field here. */

/* How cym_http_head writes a header's name. */
#define CYM_HEAD_AS_IS 0
#define CYM_HEAD_LOWER 1 /* lowercased, as ASGI wants it */
#define CYM_HEAD_CGI 2   /* the WSGI environ's key: HTTP_X_Y for "x-y" */

/* Appends s and a NUL separator to buf (room checked by the caller), with
 * ASCII letters lowercased (lower 1) or uppercased and '-' as '_' (lower
 * 2); 0 when s holds a NUL of its own (the separator would be ambiguous).
 * Field names are tokens (patch 0061), so ASCII alone needs a case. */
static int cym_head_put(char *buf, size_t *n, const struct mg_str *s, int lower) {
  size_t i;
  if (s->len > 0) {
    if (memchr(s->buf, 0, s->len) != NULL) return 0;
    memcpy(buf + *n, s->buf, s->len);
    if (lower == CYM_HEAD_LOWER) {
      for (i = *n; i < *n + s->len; i++) {
        if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char) (buf[i] + 32);
      }
    } else if (lower == CYM_HEAD_CGI) {
      for (i = *n; i < *n + s->len; i++) {
        if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = (char) (buf[i] - 32);
        else if (buf[i] == '-') buf[i] = '_';
      }
    }
  }
  *n += s->len;
  buf[(*n)++] = '\0';
  return 1;
}

/* PEP 3333's key for a field name, written by cym_head_put: CONTENT_TYPE
 * and CONTENT_LENGTH as they are, any other with "HTTP_" before it. */
static int cym_head_put_cgi(char *buf, size_t *n, const struct mg_str *name) {
  if (mg_strcasecmp(*name, mg_str("content-type")) != 0 &&
      mg_strcasecmp(*name, mg_str("content-length")) != 0) {
    memcpy(buf + *n, "HTTP_", 5);
    *n += 5;
  }
  return cym_head_put(buf, n, name, CYM_HEAD_CGI);
}

/* The path of an absolute-form request target ("http://host/p?q"; the
 * query is already apart): origin servers must accept that form (RFC 9112
 * section 3.2.2), and applications want the path alone, as the origin form
 * gives it ("/" when the target has none).  Any other target as it is. */
static struct mg_str cym_target_path(struct mg_str uri) {
  size_t i;
  if (uri.len > 0 && uri.buf[0] == '/') return uri;
  if (uri.len >= 7 && mg_ncasecmp(uri.buf, "http://", 7) == 0) {
    i = 7;
  } else if (uri.len >= 8 && mg_ncasecmp(uri.buf, "https://", 8) == 0) {
    i = 8;
  } else {
    return uri;
  }
  while (i < uri.len && uri.buf[i] != '/') i++;
  return i == uri.len ? mg_str("/") : mg_str_n(uri.buf + i, uri.len - i);
}

/* s up to its first '#': a fragment is not part of a request target (RFC
 * 9112 section 3.2), so a client that sends one gets it cut off, as
 * uvicorn and gunicorn cut it off. */
static struct mg_str cym_no_fragment(struct mg_str s) {
  const char *hash = s.len > 0 ? (const char *) memchr(s.buf, '#', s.len) : NULL;
  return hash == NULL ? s : mg_str_n(s.buf, (size_t) (hash - s.buf));
}

/* Copies method, uri (its path: cym_target_path), query (both without a
 * fragment: cym_no_fragment), proto, then each header's name and value,
 * into buf as NUL-separated fields.  form says how a name is written:
 * CYM_HEAD_AS_IS, CYM_HEAD_LOWER (as ASGI wants it) or CYM_HEAD_CGI (as the
 * key of a WSGI environ: HTTP_ACCEPT_LANGUAGE, CONTENT_TYPE; a name holding
 * '_' is left out with its value, so "X_User" cannot pose as "X-User").
 * hm is the message's address, as the dispatcher's event views hold it.
 * Returns the bytes the fields take with their separators: when that is
 * more than size nothing was copied (call again with a larger buf).  -1
 * when a field holds a NUL byte, and with CYM_HEAD_CGI -2 when two headers
 * give the same key (their values must be joined): the caller then reads
 * the fields one by one. */
long cym_http_head(uintptr_t hm_addr, char *buf, size_t size, int form) {
  const struct mg_http_message *hm = (const struct mg_http_message *) hm_addr;
  struct mg_str target = cym_target_path(hm->uri), path = cym_no_fragment(target);
  /* After a '#' in the path, Mongoose's query is the fragment's too. */
  struct mg_str query = path.len < target.len ? mg_str_n(hm->query.buf, 0)
                                              : cym_no_fragment(hm->query);
  size_t need = hm->method.len + path.len + query.len + hm->proto.len + 4, n = 0, i, j;
  struct mg_str keys[MG_MAX_HTTP_HEADERS];
  size_t nkeys = 0, start;
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    need += hm->headers[i].name.len + hm->headers[i].value.len + 2;
    if (form == CYM_HEAD_CGI) need += 5; /* "HTTP_" */
  }
  if (need > size) return (long) need;
  if (!cym_head_put(buf, &n, &hm->method, 0) || !cym_head_put(buf, &n, &path, 0) ||
      !cym_head_put(buf, &n, &query, 0) || !cym_head_put(buf, &n, &hm->proto, 0)) {
    return -1;
  }
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    const struct mg_str *name = &hm->headers[i].name;
    if (form != CYM_HEAD_CGI) {
      if (!cym_head_put(buf, &n, name, form)) return -1;
    } else {
      if (memchr(name->buf, '_', name->len) != NULL) continue;
      start = n;
      if (!cym_head_put_cgi(buf, &n, name)) return -1;
      /* A key seen before: the values must be joined (or the last kept). */
      keys[nkeys] = mg_str_n(buf + start, n - 1 - start);
      for (j = 0; j < nkeys; j++) {
        if (keys[j].len == keys[nkeys].len &&
            memcmp(keys[j].buf, keys[nkeys].buf, keys[j].len) == 0) {
          return -2;
        }
      }
      nkeys++;
    }
    if (!cym_head_put(buf, &n, &hm->headers[i].value, 0)) return -1;
  }
  return (long) n;
}

/* Does hm have more than one Host line?  A server must answer 400 (RFC 9112
 * section 3.2): a proxy and the server could each take another host. */
static int cym_two_hosts(const struct mg_http_message *hm) {
  size_t i, hosts = 0;
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    if (hm->headers[i].name.len == 4 && mg_ncasecmp(hm->headers[i].name.buf, "host", 4) == 0 &&
        ++hosts > 1) {
      return 1;
    }
  }
  return 0;
}

#define CYM_REQ_HTTP 0
#define CYM_REQ_WS 1
#define CYM_REQ_VERSION 2
#define CYM_REQ_BAD 3
#define CYM_REQ_EMPTY 4

/* What the WSGI and ASGI servers do with a complete request, decided in the
 * one call they make per request anyway: CYM_REQ_VERSION when its HTTP
 * major version is not 1 (they answer 505, RFC 9110 section 15.6.6;
 * Mongoose's parser has checked the form "HTTP/d.d"), CYM_REQ_BAD when it
 * has more than one Host line (400: cym_two_hosts), CYM_REQ_WS when it asks
 * for a WebSocket upgrade (Upgrade: websocket), else CYM_REQ_EMPTY when it
 * has no body (saving the servers a read of it) and CYM_REQ_HTTP when it
 * has one.  A higher minor version (HTTP/1.2) is served as HTTP/1.1 (RFC
 * 9110 section 2.5). */
int cym_http_kind(uintptr_t hm_addr) {
  struct mg_http_message *hm = (struct mg_http_message *) hm_addr;
  struct mg_str *v;
  if (hm->proto.len < 6 || hm->proto.buf[5] != '1') return CYM_REQ_VERSION;
  if (cym_two_hosts(hm)) return CYM_REQ_BAD;
  v = mg_http_get_header(hm, "Upgrade");
  if (v != NULL && mg_strcasecmp(*v, mg_str("websocket")) == 0) return CYM_REQ_WS;
  return hm->body.len == 0 ? CYM_REQ_EMPTY : CYM_REQ_HTTP;
}
