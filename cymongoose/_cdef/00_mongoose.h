/* The subset of mongoose.h (7.23) that cymongoose uses, written by hand.
 * Shared structs live here; each feature's own functions live in its own
 * file in this folder.  "...;" lets the compiler fill in what we omit. */

typedef void (*mg_event_handler_t)(struct mg_connection *, int ev, void *ev_data);
typedef void (*mg_pfn_t)(char, void *arg);

struct mg_str {
  char *buf;
  size_t len;
};

struct mg_addr {
  union {
    uint8_t ip[16];
    uint32_t ip4;
    uint64_t ip6[2];
  } addr;
  uint16_t port;
  uint8_t scope_id;
  bool is_ip6;
};

struct mg_iobuf {
  unsigned char *buf;
  size_t size;
  size_t len;
  size_t align;
};

struct mg_timer {
  uint64_t period_ms;
  uint64_t expire;
  unsigned flags;
  void (*fn)(void *);
  void *arg;
  struct mg_timer *next;
};

struct mg_mgr {
  struct mg_connection *conns;
  unsigned long nextid;
  void *userdata;
  uint16_t mqtt_id;
  struct mg_timer *timers;
  ...;
};

/* Bit-fields are read through cym_flags(); only plain fields here. */
struct mg_connection {
  struct mg_connection *next;
  struct mg_mgr *mgr;
  struct mg_addr loc;
  struct mg_addr rem;
  unsigned long id;
  struct mg_iobuf recv;
  struct mg_iobuf send;
  void *fn_data;
  ...;
};

struct mg_http_header {
  struct mg_str name;
  struct mg_str value;
};

struct mg_http_message {
  struct mg_str method, uri, query, proto;
  struct mg_http_header headers[100];  /* MG_MAX_HTTP_HEADERS, build_ffi.py */
  struct mg_str body;
  struct mg_str head;
  struct mg_str message;
};

struct mg_http_serve_opts {
  const char *root_dir;
  const char *ssi_pattern;
  const char *extra_headers;
  const char *mime_types;
  const char *page404;
  struct mg_fs *fs;
};

struct mg_http_part {
  struct mg_str name;
  struct mg_str filename;
  struct mg_str body;
};

struct mg_ws_message {
  struct mg_str data;
  uint8_t flags;
};

struct mg_mqtt_prop {
  uint8_t id;
  uint32_t iv;
  struct mg_str key;
  struct mg_str val;
};

struct mg_mqtt_opts {
  struct mg_str user;
  struct mg_str pass;
  struct mg_str client_id;
  struct mg_str topic;
  struct mg_str message;
  uint8_t qos;
  uint8_t version;
  uint16_t keepalive;
  uint16_t retransmit_id;
  bool retain;
  bool clean;
  struct mg_mqtt_prop *props;
  size_t num_props;
  struct mg_mqtt_prop *will_props;
  size_t num_will_props;
};

struct mg_mqtt_message {
  struct mg_str topic;
  struct mg_str data;
  struct mg_str dgram;
  uint16_t id;
  uint8_t cmd;
  uint8_t qos;
  uint8_t ack;
  size_t props_start;
  size_t props_size;
};

struct mg_tls_opts {
  struct mg_str ca;
  struct mg_str cert;
  struct mg_str key;
  struct mg_str name;
  bool skip_verification;
};

struct mg_rpc_req {
  struct mg_rpc **head;
  struct mg_rpc *rpc;
  mg_pfn_t pfn;
  void *pfn_data;
  void *req_data;
  struct mg_str frame;
};

struct mg_rpc {
  struct mg_rpc *next;
  struct mg_str method;
  void (*fn)(struct mg_rpc_req *);
  void *fn_data;
};

/* Process-wide state set at import (cymongoose/_ffi.py). */
extern int mg_log_level;
extern uint64_t mg_boot_timestamp_ms;

uint64_t mg_millis(void);

/* Core: manager, connections, HTTP. */
void mg_mgr_poll(struct mg_mgr *, int ms);
bool mg_send(struct mg_connection *, const void *, size_t);
struct mg_str *mg_http_get_header(struct mg_http_message *, const char *name);
int mg_http_get_var(const struct mg_str *, const char *name, char *, size_t);
int mg_http_status(const struct mg_http_message *hm);
void mg_http_write_chunk(struct mg_connection *c, const char *buf, size_t len);
void mg_http_bauth(struct mg_connection *, const char *user, const char *pass);
void mg_http_serve_dir(struct mg_connection *, struct mg_http_message *hm,
                       const struct mg_http_serve_opts *);
void mg_http_serve_file(struct mg_connection *, struct mg_http_message *hm,
                        const char *path, const struct mg_http_serve_opts *);
size_t mg_mqtt_next_prop(struct mg_mqtt_message *, struct mg_mqtt_prop *,
                         size_t ofs);
bool mg_wakeup(struct mg_mgr *, unsigned long id, const void *buf, size_t len);
bool mg_wakeup_init(struct mg_mgr *);
