/* Static file serving around Mongoose's own (RFC 9110 sections 8.8, 13, 14).
 *
 * mg_http_serve_dir/mg_http_serve_file answer a suffix range with the whole
 * file, send no Last-Modified, compare If-None-Match as one exact string,
 * omit Vary and cut the path at a decoded NUL.  cym_serve() keeps Mongoose's
 * path resolution (uri_to_path), directory listing and SSI, and answers
 * the headers itself; cym_static_cb streams the body (one bounded read into
 * the send buffer per loop turn, so a big file never sits in memory). */

#include <stdlib.h>
#include <sys/stat.h>

#define CYM_STATIC_NO_SYMLINKS 1
#define CYM_STATIC_NO_DOTFILES 2

static int cym_num(const char *s, size_t n, int *out) {
  size_t i;
  int v = 0;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 1;
}

/* Parses an IMF-fixdate (the only form senders may generate); anything else
 * returns 0 and the condition is ignored, as RFC 9110 13.1.3/13.1.4 say for
 * an invalid date. */
static int cym_parse_date(struct mg_str s, time_t *out) {
  int d, y, h, mi, se, mon = -1, i;
  const char *p = s.buf;
  struct tm tm;
  if (s.len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' ||
      p[11] != ' ' || p[16] != ' ' || p[19] != ':' || p[22] != ':' ||
      memcmp(p + 25, " GMT", 4) != 0)
    return 0;
  for (i = 0; i < 12; i++)
    if (memcmp(p + 8, s_cym_months[i], 3) == 0) mon = i;
  if (mon < 0 || !cym_num(p + 5, 2, &d) || !cym_num(p + 12, 4, &y) ||
      !cym_num(p + 17, 2, &h) || !cym_num(p + 20, 2, &mi) ||
      !cym_num(p + 23, 2, &se) || d < 1 || d > 31 || h > 23 || mi > 59 ||
      se > 60)
    return 0;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = y - 1900, tm.tm_mon = mon, tm.tm_mday = d;
  tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = se;
  *out = timegm(&tm);
  return 1;
}

static struct mg_str cym_trim(struct mg_str s) {
  while (s.len > 0 && (s.buf[0] == ' ' || s.buf[0] == '\t')) s.buf++, s.len--;
  while (s.len > 0 && (s.buf[s.len - 1] == ' ' || s.buf[s.len - 1] == '\t'))
    s.len--;
  return s;
}

/* Does the entity-tag list `list` (or "*") match `etag`?  The weak
 * comparison ignores a W/ prefix; the strong one never matches a weak tag
 * (RFC 9110 8.8.3.2). */
static int cym_etag_match(struct mg_str list, const char *etag, int weak) {
  struct mg_str item, e = mg_str(etag);
  if (mg_strcmp(cym_trim(list), mg_str("*")) == 0) return 1;
  while (mg_span(list, &item, &list, ',')) {
    item = cym_trim(item);
    if (item.len > 2 && item.buf[0] == 'W' && item.buf[1] == '/') {
      if (!weak) continue;
      item.buf += 2, item.len -= 2;
    }
    if (mg_strcmp(item, e) == 0) return 1;
  }
  return 0;
}

/* Parses a Range value for a file of `size` bytes.  Returns 0 when the
 * header is to be ignored (not "bytes", bad syntax, several ranges: the
 * whole file is sent), -1 when no range is satisfiable (416), 1 with the
 * one range in [*a, *b]. */
static int cym_range(struct mg_str v, uint64_t size, uint64_t *a,
                     uint64_t *b) {
  struct mg_str spec, first, last;
  int count = 0, good = 0;
  v = cym_trim(v);
  if (v.len < 6 || mg_ncasecmp(v.buf, "bytes=", 6) != 0) return 0;
  v.buf += 6, v.len -= 6;
  while (mg_span(v, &spec, &v, ',')) {
    uint64_t x = 0, y = 0;
    spec = cym_trim(spec);
    if (spec.len == 0) continue;  // empty list elements are allowed
    if (!mg_span(spec, &first, &last, '-')) return 0;
    first = cym_trim(first), last = cym_trim(last);
    if ((first.len > 0 && !mg_str_to_num(first, 10, &x, sizeof(x))) ||
        (last.len > 0 && !mg_str_to_num(last, 10, &y, sizeof(y))) ||
        (first.len == 0 && last.len == 0))
      return 0;
    if (++count > 1) return 0;  // several ranges: the whole file
    if (first.len == 0) {  // suffix: the last y bytes
      if (y == 0 || size == 0) continue;
      *a = y >= size ? 0 : size - y, *b = size - 1, good = 1;
    } else {
      if (last.len > 0 && y < x) return 0;  // invalid: ignore the header
      if (x >= size) continue;
      *a = x, *b = last.len == 0 || y >= size ? size - 1 : y, good = 1;
    }
  }
  if (count == 0) return 0;
  return good ? 1 : -1;
}

/* The root (of a "uri=dir,..." list) that uri_to_path picks for hm. */
static struct mg_str cym_root_of(struct mg_http_message *hm, const char *dirs) {
  struct mg_str k, v, part, s = mg_str(dirs), p = mg_str_n(NULL, 0);
  while (mg_span(s, &part, &s, ',')) {
    if (!mg_span(part, &k, &v, '=')) k = part, v = mg_str_n(NULL, 0);
    if (v.len == 0) v = k, k = mg_str("/"), p = v;
    if (hm->uri.len < k.len) continue;
    if (mg_strcmp(k, mg_str_n(hm->uri.buf, k.len)) != 0) continue;
    p = v;
  }
  return p;
}

/* Is `path`, symlinks resolved, inside `root` (symlinks resolved too)? */
static int cym_inside(const char *path, struct mg_str root) {
  char r[MG_PATH_MAX], rr[PATH_MAX], rp[PATH_MAX];
  size_t n;
  mg_snprintf(r, sizeof(r), "%.*s", (int) root.len, root.buf);
  if (realpath(r, rr) == NULL || realpath(path, rp) == NULL) return 0;
  n = strlen(rr);
  if (n == 1) return 1;  // root is "/"
  return strncmp(rp, rr, n) == 0 && (rp[n] == '\0' || rp[n] == '/');
}

/* Mongoose's static_cb with a larger chunk: it reads one MG_IO_SIZE
 * (16 KiB) block per poll, so a 1 GiB file took 65536 loop turns, each one a
 * trip through Python; CYM_STATIC_CHUNK bytes per turn cut that 16-fold,
 * still bounded memory per download. */
#define CYM_STATIC_CHUNK (256 * 1024)
static void cym_static_cb(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_WRITE || ev == MG_EV_POLL) {
    struct mg_fd *fd = (struct mg_fd *) c->pfn_data;
    size_t n, space;
    size_t *cl = (size_t *) &c->data[(sizeof(c->data) - sizeof(size_t)) /
                                     sizeof(size_t) * sizeof(size_t)];
    if (c->send.size < CYM_STATIC_CHUNK)
      mg_iobuf_resize(&c->send, CYM_STATIC_CHUNK);
    if (c->send.len >= c->send.size) return;  // wait for the socket
    if ((space = c->send.size - c->send.len) > *cl) space = *cl;
    n = fd->fs->rd(fd->fd, c->send.buf + c->send.len, space);
    c->send.len += n;
    *cl -= n;
    if (n == 0) restore_http_cb(c);
  } else if (ev == MG_EV_CLOSE) {
    restore_http_cb(c);
  }
  (void) ev_data;
}

static void cym_status_only(struct mg_connection *c, int status,
                            const char *hdrs, const char *body) {
  mg_http_reply(c, status, hdrs, "%s", body);
}

static void cym_serve_file(struct mg_connection *c, struct mg_http_message *hm,
                           const char *path,
                           const struct mg_http_serve_opts *opts,
                           const char *cache_control, struct mg_str jail) {
  char etag[64], lm[40], tmp[MG_PATH_MAX], range[100], cc[300];
  struct mg_fs *fs = opts->fs ? opts->fs : &mg_fs_posix;
  struct mg_fd *fd = NULL;
  size_t size = 0;
  time_t mtime = 0, when = 0;
  const char *hdrs = opts->extra_headers ? opts->extra_headers : "";
  struct mg_str mime = guess_content_type(mg_str(path), opts->mime_types);
  struct mg_str *h, *ae = mg_http_get_header(hm, "Accept-Encoding");
  int gzip = 0, vary = 0, status = 200, get_or_head;
  uint64_t r1 = 0, r2 = 0, cl;

  // A .gz twin makes the answer depend on Accept-Encoding (Vary).
  mg_snprintf(tmp, sizeof(tmp), "%s.gz", path);
  if (fs->st(tmp, NULL, NULL) != 0) {
    vary = 1;
    if (ae != NULL && mg_match(*ae, mg_str("*gzip*"), NULL)) {
      fd = mg_fs_open(fs, tmp, MG_FS_READ);
      if (fd != NULL) gzip = 1, path = tmp;
    }
  }
  if (fd == NULL) fd = mg_fs_open(fs, path, MG_FS_READ);
  if (fd == NULL && opts->page404) {
    fd = mg_fs_open(fs, opts->page404, MG_FS_READ);
    path = opts->page404;
    mime = guess_content_type(mg_str(path), opts->mime_types);
    vary = 0;
  }
  // The file opened (the .gz twin too) must resolve inside `jail`, if set.
  if (fd == NULL || fs->st(path, &size, &mtime) == 0 ||
      (jail.buf != NULL && !cym_inside(path, jail))) {
    mg_fs_close(fd);
    cym_status_only(c, 404, hdrs, "Not found\n");
    return;
  }
  mg_http_etag(etag, sizeof(etag), size, mtime);
  cym_http_date(mtime, lm, sizeof(lm));
  mg_snprintf(cc, sizeof(cc), "%s%s%s%s",
              cache_control && *cache_control ? "Cache-Control: " : "",
              cache_control ? cache_control : "",
              cache_control && *cache_control ? "\r\n" : "",
              vary ? "Vary: Accept-Encoding\r\n" : "");
  get_or_head = mg_strcmp(hm->method, mg_str("GET")) == 0 ||
                mg_strcmp(hm->method, mg_str("HEAD")) == 0;

  // Preconditions in RFC 9110 13.2.2 order.
  if ((h = mg_http_get_header(hm, "If-Match")) != NULL) {
    if (!cym_etag_match(*h, etag, 0)) status = 412;
  } else if ((h = mg_http_get_header(hm, "If-Unmodified-Since")) != NULL &&
             cym_parse_date(cym_trim(*h), &when) && mtime > when) {
    status = 412;
  }
  if (status == 200) {
    if ((h = mg_http_get_header(hm, "If-None-Match")) != NULL) {
      if (cym_etag_match(*h, etag, 1)) status = get_or_head ? 304 : 412;
    } else if (get_or_head &&
               (h = mg_http_get_header(hm, "If-Modified-Since")) != NULL &&
               cym_parse_date(cym_trim(*h), &when) && mtime <= when) {
      status = 304;
    }
  }
  if (status == 412) {
    mg_fs_close(fd);
    cym_status_only(c, 412, hdrs, "");
    return;
  }
  if (status == 304) {
    mg_fs_close(fd);
    mg_printf(c, "HTTP/1.1 304 Not Modified\r\nETag: %s\r\n"
              "Last-Modified: %s\r\n%s%s\r\n", etag, lm, cc, hdrs);
    c->is_resp = 0;
    return;
  }

  cl = size;
  range[0] = '\0';
  h = mg_http_get_header(hm, "Range");
  if (h != NULL && mg_strcmp(hm->method, mg_str("GET")) == 0) {
    struct mg_str *ir = mg_http_get_header(hm, "If-Range");
    int use = 1;
    if (ir != NULL) {  // 13.1.5: a strong ETag match, or the exact date
      struct mg_str v = cym_trim(*ir);
      if (v.len > 0 && (v.buf[0] == '"' || v.buf[0] == 'W')) {
        use = v.buf[0] == '"' && mg_strcmp(v, mg_str(etag)) == 0;
      } else {
        use = cym_parse_date(v, &when) && when == mtime;
      }
    }
    if (use) {
      int n = cym_range(*h, (uint64_t) size, &r1, &r2);
      if (n < 0) {
        mg_fs_close(fd);
        mg_snprintf(range, sizeof(range), "Content-Range: bytes */%llu\r\n",
                    (uint64_t) size);
        mg_printf(c, "HTTP/1.1 416 Range Not Satisfiable\r\n%s"
                  "Content-Length: 0\r\n%s\r\n", range, hdrs);
        c->is_resp = 0;
        return;
      }
      if (n > 0) {
        status = 206;
        cl = r2 - r1 + 1;
        mg_snprintf(range, sizeof(range),
                    "Content-Range: bytes %llu-%llu/%llu\r\n", r1, r2,
                    (uint64_t) size);
        fs->sk(fd->fd, (size_t) r1);
      }
    }
  }
  mg_printf(c,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nETag: %s\r\n"
            "Last-Modified: %s\r\nAccept-Ranges: bytes\r\n"
            "Content-Length: %llu\r\n%s%s%s%s\r\n",
            status, mg_http_status_code_str(status), (int) mime.len, mime.buf,
            etag, lm, cl, gzip ? "Content-Encoding: gzip\r\n" : "", range, cc,
            hdrs);
  if (mg_strcmp(hm->method, mg_str("HEAD")) == 0 || c->is_closing || cl == 0) {
    c->is_resp = 0;
    mg_fs_close(fd);
  } else {  // cym_static_cb streams cl bytes, one chunk per loop turn
    size_t *clp = (size_t *) &c->data[(sizeof(c->data) - sizeof(size_t)) /
                                      sizeof(size_t) * sizeof(size_t)];
    c->pfn = cym_static_cb;
    c->pfn_data = fd;
    *clp = (size_t) cl;
  }
}

/* Does the decoded path hold a control character (NUL included) or, with
 * `dots`, a segment that starts with '.'? */
static int cym_bad_uri(struct mg_str uri, int *dotfile) {
  char buf[MG_PATH_MAX];
  int i, n = mg_url_decode(uri.buf, uri.len, buf, sizeof(buf), 0);
  *dotfile = 0;
  if (n < 0) return 1;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char) buf[i];
    if (ch < 0x20 || ch == 0x7f) return 1;
    if (ch == '.' && (i == 0 || buf[i - 1] == '/')) *dotfile = 1;
  }
  return 0;
}

void cym_serve(struct mg_connection *c, struct mg_http_message *hm,
               const struct mg_http_serve_opts *opts, const char *file,
               const char *cache_control, int flags) {
  char path[MG_PATH_MAX];
  int dotfile = 0, kind;
  struct mg_http_message origin;
  if (file != NULL) {
    cym_serve_file(c, hm, file, opts, cache_control, mg_str_n(NULL, 0));
    return;
  }
  if (cym_two_hosts(hm)) {
    mg_http_reply(c, 400, "", "Bad Request\n");  /* as the servers answer it */
    return;
  }
  if (hm->uri.len > 0 && (hm->uri.buf[0] != '/' || memchr(hm->uri.buf, '#', hm->uri.len))) {
    /* An absolute-form target (http://host/p) maps its path, as the origin
     * form would, and a #fragment is cut off (http_head.c, cym_target_path,
     * cym_no_fragment). */
    origin = *hm;
    origin.uri = cym_no_fragment(cym_target_path(hm->uri));
    hm = &origin;
  }
  if (cym_bad_uri(hm->uri, &dotfile)) {
    mg_http_reply(c, 400, "", "Invalid path\n");
    return;
  }
  if (dotfile && (flags & CYM_STATIC_NO_DOTFILES)) {
    mg_http_reply(c, 404, "", "Not found\n");
    return;
  }
  kind = uri_to_path(c, hm, opts, path, sizeof(path));
  if (kind < 0) return;  // uri_to_path answered (400, 301)
  if (kind != 0 && (flags & CYM_STATIC_NO_SYMLINKS) &&
      !cym_inside(path, cym_root_of(hm, opts->root_dir))) {
    mg_http_reply(c, 404, "", "Not found\n");
  } else if (kind & MG_FS_DIR) {
#if MG_ENABLE_DIRLIST
    listdir(c, hm, opts, path);
#else
    mg_http_reply(c, 403, "", "Forbidden\n");
#endif
  } else if (kind && opts->ssi_pattern != NULL &&
             mg_match(mg_str(path), mg_str(opts->ssi_pattern), NULL)) {
    mg_http_serve_ssi(c, opts->root_dir, path);
  } else {
    cym_serve_file(c, hm, path, opts, cache_control,
                   (flags & CYM_STATIC_NO_SYMLINKS)
                       ? cym_root_of(hm, opts->root_dir)
                       : mg_str_n(NULL, 0));
  }
}
