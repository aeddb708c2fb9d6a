/* permessage-deflate (RFC 7692) for ws.c: negotiation, and one zlib
 * stream per direction and connection.
 *
 * Memory per connection is bounded by the window sizes: our compressor
 * uses at most CYM_PMD_TX_BITS (12: a 4 KiB window) and memLevel
 * CYM_PMD_MEMLEVEL (5), about 40 KiB with zlib's state; the decompressor
 * needs the peer's window, which a server limits to CYM_PMD_RX_BITS when
 * the client lets it (client_max_window_bits), 32 KiB plus 7 KiB of state
 * otherwise.  The streams are made on first use.  A message's inflated
 * bytes live in a buffer that grows up to the connection's message limit
 * and is freed after a message larger than CYM_PMD_KEEP_BUF. */

#include <zlib.h>

#define CYM_PMD_TX_BITS 12
#define CYM_PMD_RX_BITS 12
#define CYM_PMD_MEMLEVEL 5
#define CYM_PMD_KEEP_BUF (64 * 1024)

struct cym_pmd {
  z_stream tx, rx;
  uint8_t tx_ready, rx_ready; /* streams initialised */
  uint8_t tx_reset, rx_reset; /* no_context_takeover: reset after a message */
  uint8_t tx_bits, rx_bits;   /* window bits, 9..15 and 8..15 */
  uint8_t *zbuf;              /* deflated output of one message */
  size_t zbuf_size;
  uint8_t *out;               /* inflated input of one message */
  size_t out_size;
};

/* Parameters of one extension offer or answer. */
struct cym_pmd_params {
  int server_nct, client_nct; /* no_context_takeover flags */
  int server_bits, client_bits; /* 0: absent; -1: present without a value */
};

static bool cym_pmd_token_eq(struct mg_str s, const char *lit) {
  return mg_strcasecmp(s, mg_str(lit)) == 0;
}

static struct mg_str cym_pmd_trim(struct mg_str s) {
  while (s.len > 0 && (s.buf[0] == ' ' || s.buf[0] == '\t')) s.buf++, s.len--;
  while (s.len > 0 && (s.buf[s.len - 1] == ' ' || s.buf[s.len - 1] == '\t')) s.len--;
  return s;
}

/* Parses "permessage-deflate; p; p=v ..." (one element of the header's
 * comma list).  False for another extension or a bad parameter: unknown,
 * repeated, or a window size outside 8..15 (quoted values allowed). */
static bool cym_pmd_parse(struct mg_str offer, struct cym_pmd_params *p) {
  struct mg_str name, param;
  memset(p, 0, sizeof(*p));
  if (!mg_span(offer, &name, &offer, ';')) name = offer, offer = mg_str_n("", 0);
  if (!cym_pmd_token_eq(cym_pmd_trim(name), "permessage-deflate")) return false;
  while (offer.len > 0) {
    struct mg_str key, val;
    int *bits = NULL;
    if (!mg_span(offer, &param, &offer, ';')) break;
    if (memchr(param.buf, '=', param.len) != NULL) {
      mg_span(param, &key, &val, '=');
    } else {
      key = param, val = mg_str_n(NULL, 0);
    }
    key = cym_pmd_trim(key);
    if (key.len == 0 && val.buf == NULL) continue; /* "a;;b" or a trailing ';' */
    if (cym_pmd_token_eq(key, "server_no_context_takeover")) {
      if (p->server_nct || val.buf != NULL) return false;
      p->server_nct = 1;
      continue;
    }
    if (cym_pmd_token_eq(key, "client_no_context_takeover")) {
      if (p->client_nct || val.buf != NULL) return false;
      p->client_nct = 1;
      continue;
    }
    if (cym_pmd_token_eq(key, "server_max_window_bits")) bits = &p->server_bits;
    if (cym_pmd_token_eq(key, "client_max_window_bits")) bits = &p->client_bits;
    if (bits == NULL || *bits != 0) return false;
    if (val.buf == NULL) {
      *bits = -1;
    } else {
      val = cym_pmd_trim(val);
      if (val.len >= 2 && val.buf[0] == '"' && val.buf[val.len - 1] == '"')
        val.buf++, val.len -= 2;
      if (val.len == 1 && val.buf[0] == '8') *bits = 8;
      else if (val.len == 1 && val.buf[0] == '9') *bits = 9;
      else if (val.len == 2 && val.buf[0] == '1' && val.buf[1] >= '0' && val.buf[1] <= '5')
        *bits = 10 + (val.buf[1] - '0');
      else return false;
    }
  }
  return true;
}

/* Server: picks the first acceptable offer of a Sec-WebSocket-Extensions
 * header and writes the answer's header line into `line`.  NULL when no
 * offer fits (the handshake then goes on without compression). */
static struct cym_pmd *cym_pmd_accept(const struct mg_str *hdr, char *line,
                                      size_t size) {
  struct mg_str rest = *hdr, offer;
  struct cym_pmd_params p;
  while (rest.len > 0) {
    struct cym_pmd *z;
    int tx_bits;
    if (!mg_span(rest, &offer, &rest, ',')) break;
    if (!cym_pmd_parse(offer, &p) || p.server_bits == -1) continue;
    /* zlib cannot compress with a 256-byte window: decline such offers */
    if (p.server_bits == 8) continue;
    tx_bits = p.server_bits > 0 && p.server_bits < CYM_PMD_TX_BITS ? p.server_bits
                                                                     : CYM_PMD_TX_BITS;
    z = (struct cym_pmd *) calloc(1, sizeof(*z));
    if (z == NULL) return NULL;
    z->tx_bits = (uint8_t) tx_bits;
    z->tx_reset = (uint8_t) p.server_nct;
    z->rx_reset = (uint8_t) p.client_nct;
    z->rx_bits = p.client_bits == 0 ? 15
                 : p.client_bits == -1 || p.client_bits > CYM_PMD_RX_BITS
                     ? CYM_PMD_RX_BITS
                     : (uint8_t) p.client_bits;
    if (p.client_bits != 0) {
      mg_snprintf(line, size,
                  "Sec-WebSocket-Extensions: permessage-deflate%s%s; "
                  "server_max_window_bits=%d; client_max_window_bits=%d\r\n",
                  p.server_nct ? "; server_no_context_takeover" : "",
                  p.client_nct ? "; client_no_context_takeover" : "", tx_bits,
                  (int) z->rx_bits);
    } else {
      mg_snprintf(line, size,
                  "Sec-WebSocket-Extensions: permessage-deflate%s%s; "
                  "server_max_window_bits=%d\r\n",
                  p.server_nct ? "; server_no_context_takeover" : "",
                  p.client_nct ? "; client_no_context_takeover" : "", tx_bits);
    }
    return z;
  }
  return NULL;
}

/* The offers a client sends, in order of preference: with context
 * takeover, then without it for a server that asks for that
 * (client_no_context_takeover in an offer promises it, RFC 7692 7.1.1.2). */
static const char cym_pmd_offer[] =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
    "permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n";

/* Client: reads the server's answer to cym_pmd_offer.  NULL with *bad set
 * when the answer is not one the offer allows. */
static struct cym_pmd *cym_pmd_answer(const struct mg_str *hdr, bool *bad) {
  struct cym_pmd_params p;
  struct cym_pmd *z;
  *bad = true;
  if (memchr(hdr->buf, ',', hdr->len) != NULL) return NULL; /* one extension only */
  if (!cym_pmd_parse(*hdr, &p) || p.server_bits == -1 || p.client_bits == -1 ||
      p.client_bits == 8)
    return NULL;
  z = (struct cym_pmd *) calloc(1, sizeof(*z));
  if (z == NULL) return NULL;
  *bad = false;
  z->rx_bits = (uint8_t) (p.server_bits ? p.server_bits : 15);
  z->tx_bits = (uint8_t) (p.client_bits && p.client_bits < CYM_PMD_TX_BITS
                              ? p.client_bits
                              : CYM_PMD_TX_BITS);
  z->rx_reset = (uint8_t) p.server_nct;
  z->tx_reset = (uint8_t) p.client_nct;
  return z;
}

static void cym_pmd_free(struct cym_pmd *z) {
  if (z == NULL) return;
  if (z->tx_ready) deflateEnd(&z->tx);
  if (z->rx_ready) inflateEnd(&z->rx);
  free(z->zbuf);
  free(z->out);
  free(z);
}

static bool cym_pmd_grow(uint8_t **buf, size_t *size, size_t want) {
  uint8_t *p;
  if (*size >= want) return true;
  p = (uint8_t *) realloc(*buf, want);
  if (p == NULL) return false;
  *buf = p, *size = want;
  return true;
}

/* Compresses one message into z->zbuf; returns its length, or -1 when out
 * of memory.  The trailing 00 00 FF FF of the sync flush is left off. */
static long cym_pmd_deflate(struct cym_pmd *z, const void *buf, size_t len) {
  size_t done = 0;
  int rc;
  if (!z->tx_ready) {
    if (deflateInit2(&z->tx, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -(int) z->tx_bits,
                     CYM_PMD_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
      return -1;
    z->tx_ready = 1;
  }
  if (!cym_pmd_grow(&z->zbuf, &z->zbuf_size, deflateBound(&z->tx, len) + 16))
    return -1;
  z->tx.next_in = (Bytef *) buf;
  z->tx.avail_in = (uInt) len;
  for (;;) {
    z->tx.next_out = z->zbuf + done;
    z->tx.avail_out = (uInt) (z->zbuf_size - done);
    rc = deflate(&z->tx, Z_SYNC_FLUSH);
    done = z->zbuf_size - z->tx.avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
    if (z->tx.avail_out > 0) break;
    if (!cym_pmd_grow(&z->zbuf, &z->zbuf_size, z->zbuf_size * 2)) return -1;
  }
  if (done >= 4) done -= 4;
  if (z->tx_reset) deflateReset(&z->tx);
  return (long) done;
}

/* After a message went out: let go of a large output buffer. */
static void cym_pmd_sent(struct cym_pmd *z) {
  if (z->zbuf_size > CYM_PMD_KEEP_BUF) {
    free(z->zbuf);
    z->zbuf = NULL, z->zbuf_size = 0;
  }
}

#define CYM_PMD_OK 0
#define CYM_PMD_BAD 1     /* not a valid deflate stream */
#define CYM_PMD_TOO_BIG 2 /* inflates beyond `max` bytes */
#define CYM_PMD_NOMEM 3

/* Inflates one message (its payload plus the 00 00 FF FF the sender left
 * off) into z->out, at most `max` bytes; *n gets the length. */
static int cym_pmd_inflate(struct cym_pmd *z, const uint8_t *buf, size_t len,
                           uint64_t max, size_t *n) {
  static const uint8_t tail[4] = {0, 0, 0xFF, 0xFF};
  size_t done = 0;
  int pass;
  if (!z->rx_ready) {
    if (inflateInit2(&z->rx, -(int) z->rx_bits) != Z_OK) return CYM_PMD_NOMEM;
    z->rx_ready = 1;
  }
  if (z->out_size > CYM_PMD_KEEP_BUF) { /* the last message was large */
    free(z->out);
    z->out = NULL, z->out_size = 0;
  }
  if (!cym_pmd_grow(&z->out, &z->out_size, 4096)) return CYM_PMD_NOMEM;
  for (pass = 0; pass < 2; pass++) {
    z->rx.next_in = (Bytef *) (pass == 0 ? buf : tail);
    z->rx.avail_in = (uInt) (pass == 0 ? len : sizeof(tail));
    while (z->rx.avail_in > 0) {
      int rc;
      if (done == z->out_size) {
        size_t want = z->out_size * 2;
        if (done > max) return CYM_PMD_TOO_BIG;
        if (want > max + 1) want = (size_t) max + 1; /* one more byte tells */
        if (want <= done || !cym_pmd_grow(&z->out, &z->out_size, want))
          return want <= done ? CYM_PMD_TOO_BIG : CYM_PMD_NOMEM;
      }
      z->rx.next_out = z->out + done;
      z->rx.avail_out = (uInt) (z->out_size - done);
      rc = inflate(&z->rx, Z_SYNC_FLUSH);
      done = z->out_size - z->rx.avail_out;
      if (done > max) return CYM_PMD_TOO_BIG;
      if (rc == Z_STREAM_END) { /* a final block: the next message starts anew */
        inflateReset(&z->rx);
        if (pass == 1) break;
        continue;
      }
      if (rc == Z_BUF_ERROR && z->rx.avail_out > 0) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        inflateReset(&z->rx);
        return CYM_PMD_BAD;
      }
    }
  }
  if (z->rx_reset) inflateReset(&z->rx);
  *n = done;
  return CYM_PMD_OK;
}
