/* libFuzzer harness for the parsers that read what a peer sends: HTTP heads
 * (with our patches and build options), chunked bodies, WebSocket frames,
 * MQTT packets (3.1.1 and 5, properties walked, as Mongoose and the broker
 * walk them) and the request framing
 * checks of the shim's limits.  Built and run by run.sh; not part of CI.
 *
 * The first input byte picks the parser; the rest is the peer's bytes. */
#include "mongoose.c"
#include "codes.h"

/* What cffi generates for the shim's calls into Python: the harness has none. */
static void _cym_dispatch(unsigned slot, unsigned long id, int ev, uintptr_t arg) {
  (void) slot, (void) id, (void) ev, (void) arg;
}
static void _cym_limits_log(int level, const char *line) { (void) level, (void) line; }
static void _cym_rpc_call(struct mg_rpc_req *r) { (void) r; }
static void _cym_timer(unsigned slot, unsigned long id) { (void) slot, (void) id; }
static void _cym_log_line(const char *buf, size_t len) { (void) buf, (void) len; }

/* The whole shim, as build_ffi.py's source includes it (its files refer to
 * each other). */
#include "shim_all.h"

static void fuzz_http(const char *buf, size_t len) {
  struct mg_http_message hm;
  int n = mg_http_parse(buf, len, &hm);
  if (n > 0) {
    static char head[2 * 65536]; /* room for any head cym_http_head writes */
    size_t i;
    int form;
    struct mg_str *h = mg_http_get_header(&hm, "Host");
    (void) cym_http_kind((uintptr_t) &hm);
    for (form = CYM_HEAD_AS_IS; form <= CYM_HEAD_CGI; form++) {
      (void) cym_http_head((uintptr_t) &hm, head, sizeof(head), form);
    }
    for (i = 0; i < MG_MAX_HTTP_HEADERS && hm.headers[i].name.len > 0; i++) {
      (void) hm.headers[i].value.len;
    }
    (void) h;
    (void) cym_lim_is_last(&hm);
    (void) cym_lim_header_lines(&hm);
    (void) mg_http_status(&hm);
  }
}

static void fuzz_chunks(const char *buf, size_t len) {
  int o = 0, pl, dl, cl, n = len > 0x7fffffff ? 0x7fffffff : (int) len;
  while ((cl = skip_chunk(buf + o, n - o, &pl, &dl)) > 0 && dl) o += cl;
}

static void fuzz_ws(const uint8_t *data, size_t len) {
  uint8_t *copy = (uint8_t *) malloc(len + 1); /* ws_process unmasks in place */
  struct ws_msg msg;
  size_t ofs = 0, n;
  if (copy == NULL) return;
  memcpy(copy, data, len);
  while (ofs < len && (n = ws_process(copy + ofs, len - ofs, &msg)) > 0) {
    if (msg.header_len + msg.data_len > len - ofs) abort(); /* would overread */
    ofs += msg.header_len + msg.data_len;
  }
  free(copy);
}

static void fuzz_mqtt(const uint8_t *data, size_t len, uint8_t version) {
  struct mg_mqtt_message mm;
  if (mg_mqtt_parse(data, len, version, &mm) == MQTT_OK && version == 5) {
    struct mg_mqtt_prop prop;
    size_t ofs = 0;
    int guard = 0;
    while ((ofs = mg_mqtt_next_prop(&mm, &prop, ofs)) > 0 && guard++ < 100000) (void) 0;
    if (mm.props_start <= mm.dgram.len && mm.props_size <= mm.dgram.len - mm.props_start) {
      /* the broker's own checks of the same block (mqtt_broker.c) */
      const char *p = mm.dgram.buf + mm.props_start;
      uint8_t ids[32];
      size_t at[32], cut[3];
      (void) cym_mqtt_props_walk(p, mm.props_size, ids, at, 32);
      (void) cym_mqtt_props_check(p, mm.props_size, (int) (len & 1), cut);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 5) {
    case 0: fuzz_http((const char *) data + 1, size - 1); break;
    case 1: fuzz_chunks((const char *) data + 1, size - 1); break;
    case 2: fuzz_ws(data + 1, size - 1); break;
    case 3: fuzz_mqtt(data + 1, size - 1, 4); break;
    default: fuzz_mqtt(data + 1, size - 1, 5); break;
  }
  return 0;
}
