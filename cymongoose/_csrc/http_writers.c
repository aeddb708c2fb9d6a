/* Helpers of the HTTP response writers (cymongoose/_http_writers.py). */

/* Mongoose's reason phrase for a status code ("" when it has none), so
 * every response the package writes uses the same table as mg_http_reply. */
const char *cym_http_status_text(int code) {
  return mg_http_status_code_str(code);
}

static const char *const s_cym_days[] = {"Sun", "Mon", "Tue", "Wed",
                                         "Thu", "Fri", "Sat"};
static const char *const s_cym_months[] = {"Jan", "Feb", "Mar", "Apr",
                                           "May", "Jun", "Jul", "Aug",
                                           "Sep", "Oct", "Nov", "Dec"};

/* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (locale independent). */
static void cym_http_date(time_t t, char *buf, size_t len) {
  struct tm tm;
  gmtime_r(&t, &tm);
  mg_snprintf(buf, len, "%s, %02d %s %d %02d:%02d:%02d GMT",
              s_cym_days[tm.tm_wday], tm.tm_mday, s_cym_months[tm.tm_mon],
              tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The "Date: ..." line of a response sent now, formatted once per second
 * (per thread: pool workers frame responses too). */
const char *cym_http_date_line(void) {
  static __thread time_t at = -1;
  static __thread char line[48];
  time_t now = time(NULL);
  if (now != at) {
    memcpy(line, "Date: ", 6);
    cym_http_date(now, line + 6, sizeof(line) - 6);
    at = now;
  }
  return line;
}

/* cym_http_frame: the head of a response (and with it a whole body), for
 * the WSGI and ASGI servers.  Python passes the application's headers as
 * one NUL-joined run of names and values; checking, filtering and framing
 * them here costs one C call instead of a Python loop over the headers.
 * The rules are the ones _http_writers.frame_response documents. */

/* The flags Python passes, which say what the request and connection want. */
#define CYM_FR_NO_BODY 1 /* a HEAD request (or 1xx, 204, 304): the body is not sent */
#define CYM_FR_HTTP10 2  /* the client spoke HTTP/1.0 */
#define CYM_FR_CLOSE 4   /* the connection closes after this response */
/* Added here from the status code. */
#define CYM_FR_NO_LENGTH 8 /* 204: no Content-Length either (RFC 9110 section 8.6) */

#define CYM_FR_EHEADER -1 /* a name not a token, a control character in a value, a count that is off */
#define CYM_FR_ELENGTH -2 /* a Content-Length that is not a number, or two that differ */
#define CYM_FR_EROOM -3   /* out is too small: res->need says how large */
#define CYM_FR_SIZE_BITS 40

struct cym_http_framing {
  long need;   /* bytes the head (and body) take */
  long length; /* the body length the head declares, -1 for none */
  int op;      /* -1 no body, 0 raw, 1 chunked */
  int close;   /* the connection closes after the response */
  int whole;   /* the body was copied after the head */
};

static void cym_fr_put(char *out, size_t room, size_t *pos, const char *s, size_t n) {
  if (*pos + n <= room) memcpy(out + *pos, s, n);
  *pos += n;
}

/* Is s (n bytes) the lowercase literal lit, ignoring ASCII case? */
static int cym_fr_is(const char *s, size_t n, const char *lit) {
  size_t i;
  if (strlen(lit) != n) return 0;
  for (i = 0; i < n; i++) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char) (ch + 32);
    if (ch != lit[i]) return 0;
  }
  return 1;
}

static int cym_fr_has_close(const char *s, size_t n) {
  size_t i;
  for (i = 0; i + 5 <= n; i++) {
    if (cym_fr_is(s + i, 5, "close")) return 1;
  }
  return 0;
}

/* A decimal length between optional spaces and tabs; -1 when not one. */
static long cym_fr_length(const char *s, size_t n) {
  size_t i = 0;
  long v = 0;
  int digits = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  if (i < n && s[i] == '+') i++;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
    if (v > (LONG_MAX - 9) / 10) return -1;
    v = v * 10 + (s[i] - '0');
  }
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  return digits > 0 && i == n ? v : -1;
}

/* Is s (n bytes, n > 0) a token, as a field name must be (RFC 9110
 * section 5.1)?  A space, colon or quote in a name would let the value
 * read as another header. */
static int cym_fr_token(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char) s[i], low = (unsigned char) (ch | 0x20);
    if ((low >= 'a' && low <= 'z') || (ch >= '0' && ch <= '9') || ch == '-') continue;
    if (ch == 0 || strchr("!#$%&'*+.^_`|~", ch) == NULL) return 0;
  }
  return 1;
}

/* Does s hold a control character other than a tab?  A field value may
 * not (RFC 9110 section 5.5); CR and LF would start another header. */
static int cym_fr_has_ctl(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char) s[i];
    if ((ch < ' ' && ch != '\t') || ch == 0x7f) return 1;
  }
  return 0;
}

static int cym_fr_hop_by_hop(const char *s, size_t n) {
  return cym_fr_is(s, n, "transfer-encoding") || cym_fr_is(s, n, "te") ||
         cym_fr_is(s, n, "trailer") || cym_fr_is(s, n, "upgrade") ||
         cym_fr_is(s, n, "proxy-connection");
}

/* Frames line (the status line of status code code), the npairs headers
 * in hdrs, a Date line (unless the application sent one) and the framing
 * headers into out.  A 1xx, 204 or 304 has no body.  total is the body
 * length when already known (-1 otherwise).  With body non-NULL and a
 * head that frames exactly blen raw bytes, the body is copied after the
 * head (res->whole).
 * Returns the bytes written (the low CYM_FR_SIZE_BITS bits), res->op + 1
 * (2 bits), res->close and res->whole (a bit each) above them; or a
 * CYM_FR_E* code. */
long cym_http_frame(const char *line, size_t line_len, const char *hdrs, size_t hlen,
                    size_t npairs, long total, const char *body, size_t blen, int code,
                    int flags, char *out, size_t room, struct cym_http_framing *res) {
  size_t pos = 0, at = 0, fields = 0, i;
  const char *name = NULL;
  size_t name_len = 0;
  long length = -1;
  int has_date = 0, app_connection = 0, close;
  char num[32];

  if (code < 200 || code == 204 || code == 304) flags |= CYM_FR_NO_BODY;
  if (code == 204) flags |= CYM_FR_NO_LENGTH;
  close = (flags & CYM_FR_CLOSE) != 0;
  cym_fr_put(out, room, &pos, line, line_len);
  cym_fr_put(out, room, &pos, "\r\n", 2);
  while (npairs > 0 && at <= hlen) {
    const char *s = hdrs + at, *end = memchr(s, 0, hlen - at);
    size_t n = end != NULL ? (size_t) (end - s) : hlen - at;
    if (fields % 2 == 0) {
      if (n == 0 || !cym_fr_token(s, n)) return CYM_FR_EHEADER;
      name = s;
      name_len = n;
    } else if (cym_fr_has_ctl(s, n)) {
      return CYM_FR_EHEADER;
    } else if (!cym_fr_hop_by_hop(name, name_len)) {
      int repeat = 0;
      if (cym_fr_is(name, name_len, "content-length")) {
        long v = cym_fr_length(s, n);
        /* Two that differ would let client and proxy frame it apart. */
        if (v < 0 || (length >= 0 && v != length)) return CYM_FR_ELENGTH;
        /* the same again is sent once; a 204 sends none */
        repeat = length >= 0 || (flags & CYM_FR_NO_LENGTH);
        length = v;
      } else if (cym_fr_is(name, name_len, "connection")) {
        app_connection = 1;
        if (cym_fr_has_close(s, n)) close = 1;
      } else if (cym_fr_is(name, name_len, "date")) {
        has_date = 1;
      }
      if (!repeat) {
        cym_fr_put(out, room, &pos, name, name_len);
        cym_fr_put(out, room, &pos, ": ", 2);
        cym_fr_put(out, room, &pos, s, n);
        cym_fr_put(out, room, &pos, "\r\n", 2);
      }
    }
    fields++;
    if (end == NULL) break;
    at += n + 1;
  }
  if (fields != 2 * npairs) return CYM_FR_EHEADER;
  if (!has_date) {
    const char *date = cym_http_date_line();
    cym_fr_put(out, room, &pos, date, strlen(date));
    cym_fr_put(out, room, &pos, "\r\n", 2);
  }
  res->op = 0;
  if (flags & CYM_FR_NO_BODY) {
    res->op = -1;
  } else if (length < 0) {
    if (total >= 0) {
      length = total;
      i = (size_t) snprintf(num, sizeof(num), "Content-Length: %ld\r\n", total);
      cym_fr_put(out, room, &pos, num, i);
    } else if (!(flags & CYM_FR_HTTP10)) {
      res->op = 1;
      cym_fr_put(out, room, &pos, "Transfer-Encoding: chunked\r\n", 28);
    } else {
      close = 1; /* the body ends when the connection does */
    }
  }
  if (!app_connection) {
    if (close) {
      cym_fr_put(out, room, &pos, "Connection: close\r\n", 19);
    } else if (flags & CYM_FR_HTTP10) {
      cym_fr_put(out, room, &pos, "Connection: keep-alive\r\n", 24);
    }
  }
  cym_fr_put(out, room, &pos, "\r\n", 2);
  res->whole = 0;
  if (body != NULL && (res->op < 0 || (res->op == 0 && length == (long) blen))) {
    res->whole = 1;
    if (res->op == 0) cym_fr_put(out, room, &pos, body, blen);
  }
  res->need = (long) pos;
  res->length = length;
  res->close = close;
  if (pos > room) return CYM_FR_EROOM;
  /* The outcome packed into the result: one integer costs cffi less than
   * reading the fields of res. */
  return (long) pos | ((long) (res->op + 1) << CYM_FR_SIZE_BITS) |
         ((long) close << (CYM_FR_SIZE_BITS + 2)) | ((long) res->whole << (CYM_FR_SIZE_BITS + 3));
}

/* A whole response framed by cym_http_frame straight into c's send buffer:
 * no scratch buffer to copy from, one C call.  Returns what cym_http_frame
 * returns, with bit CYM_FR_SIZE_BITS + 4 set when bytes of a next request
 * wait in the receive buffer (the caller needs to know, and this saves it
 * a crossing), or CYM_FR_EROOM when the buffer cannot grow.  total is
 * cym_http_frame's: blen when body is all there is, -1 when more may follow
 * (then only the application's own Content-Length makes it whole).  When the
 * head does not frame exactly this body (whole is 0), or on an error, the
 * send buffer is left as it was: the caller takes its general path. */
long cym_http_respond(struct mg_connection *c, const char *line, size_t line_len,
                      const char *hdrs, size_t hlen, size_t npairs, long total,
                      const char *body, size_t blen, int code, int flags) {
  struct cym_http_framing res;
  size_t guess = line_len + hlen + 2 * npairs + blen + 136;
  long n;
  if (c->send.size - c->send.len < guess &&
      !mg_iobuf_resize(&c->send, c->send.len + guess)) {
    return CYM_FR_EROOM;
  }
  n = cym_http_frame(line, line_len, hdrs, hlen, npairs, total, body, blen, code,
                     flags, (char *) c->send.buf + c->send.len, c->send.size - c->send.len,
                     &res);
  if (n == CYM_FR_EROOM) {
    if (!mg_iobuf_resize(&c->send, c->send.len + (size_t) res.need)) return CYM_FR_EROOM;
    n = cym_http_frame(line, line_len, hdrs, hlen, npairs, total, body, blen, code,
                       flags, (char *) c->send.buf + c->send.len, c->send.size - c->send.len,
                       &res);
  }
  if (n < 0 || !res.whole) return n;
  c->send.len += (size_t) res.need;
  c->is_resp = 0; /* as cym_adapters_write's END: the response is complete */
  return n | ((long) (c->recv.len > 0) << (CYM_FR_SIZE_BITS + 4));
}
