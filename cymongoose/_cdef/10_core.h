/* Our shim (cymongoose/_csrc/core.c): the one trampoline, the manager
 * wrapper and the few calls that fuse several Mongoose operations. */

#define CYM_EV_ALL ...
#define CYM_LSN_SHIFT ...

struct cym_mgr {
  struct mg_mgr mgr;
  int live;                   /* 1 once Python registered the manager */
  struct mg_connection *cur;  /* connection of the event being dispatched */
  unsigned slot;              /* the Manager's index in _dispatch._MANAGERS */
  uintptr_t handed;           /* the batch cym_mgr_poll handed off, until cym_mgr_poll_end */
  ...;
};

/* The single dispatcher: C calls Python only through this. */
extern "Python" void _cym_dispatch(unsigned slot, unsigned long id, int ev,
                                   uintptr_t arg);

void cym_ev(struct mg_connection *c, int ev, void *ev_data);

/* The event that delivers a batch of WebSocket messages and POLLs; its arg
 * is the address of records of CYM_BATCH_REC bytes (id u64, flags u32,
 * payload length u32, native order), each followed by its payload, and its
 * id their length in bytes, at most CYM_BATCH_SPAN; flags CYM_BATCH_POLLS: a
 * run of POLLs, whose payload is their connections' ids (u64 each). */
#define CYM_EV_BATCH ...
#define CYM_BATCH_REC ...
#define CYM_BATCH_POLLS ...
#define CYM_BATCH_SPAN ...

/* Strings of event structs read by address (views). */
const char *cym_str_buf(uintptr_t s);
size_t cym_str_len(uintptr_t s);
unsigned cym_ws_flags(uintptr_t wm);

struct cym_mgr *cym_mgr_new(void);
void cym_mgr_free(struct cym_mgr *m);
/* mg_mgr_poll; one poll a second also frees the empty I/O buffers of
 * connections idle since the previous one (_csrc/conn_iobufs.c).  Nonzero:
 * the length of a batch (as CYM_EV_BATCH's) at m->handed that the poll
 * handed to its caller, who delivers it and then must call
 * cym_mgr_poll_end, which writes the poll's output. */
size_t cym_mgr_poll(struct cym_mgr *m, int ms);
void cym_mgr_poll_end(struct cym_mgr *m);
/* 1: MG_EV_HTTP_HDRS reaches Python only for requests that announce a
 * body (the WSGI/ASGI server core, which takes bodies over there). */
void cym_mgr_hdrs_bodies_only(struct cym_mgr *m, int on);

enum cym_kind {
  CYM_LISTEN, CYM_CONNECT, CYM_HTTP_LISTEN, CYM_HTTP_CONNECT, CYM_WS_CONNECT,
  CYM_MQTT_LISTEN, CYM_SNTP_CONNECT
};
struct mg_connection *cym_open(struct cym_mgr *m, int kind, const char *url,
                               uintptr_t state);
struct mg_connection *cym_listen(struct cym_mgr *m, int kind, const char *url,
                                 uintptr_t state, int backlog, int reuse_port,
                                 int adopt_fd);
int cym_has_reuseport(void);
int cym_listening_family(int fd);

uintptr_t cym_state(struct mg_connection *c);
void cym_set_state(struct mg_connection *c, uintptr_t state);

/* Connection flag bits, packed by cym_flags(). */
#define CYM_F_LISTENING ...
#define CYM_F_CLIENT ...
#define CYM_F_ACCEPTED ...
#define CYM_F_TLS ...
#define CYM_F_UDP ...
#define CYM_F_WEBSOCKET ...
#define CYM_F_READABLE ...
#define CYM_F_WRITABLE ...
#define CYM_F_CLOSING ...
#define CYM_F_FULL ...
#define CYM_F_DRAINING ...
#define CYM_F_RESP ...
#define CYM_F_RESOLVING ...
#define CYM_F_CONNECTING ...
unsigned cym_flags(struct mg_connection *c);
void cym_set_flag(struct mg_connection *c, unsigned flag, int on);

void cym_close_now(struct mg_connection *c);
void cym_error(struct mg_connection *c, const char *msg);
void cym_reply(struct mg_connection *c, int status, const char *headers,
               size_t headers_len, const char *body, size_t body_len);
void cym_reply_text(struct mg_connection *c, int status, const char *body,
                    size_t body_len);
int cym_http_var(const struct mg_str *query, const char *name, char *buf,
                 size_t len);
struct mg_str cym_header_var(struct mg_http_message *hm, const char *header,
                             const char *var);
