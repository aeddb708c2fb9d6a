/* WebSocket shim (cymongoose/_csrc/ws.c): upgrade and send with fixed
 * formats, the closing handshake, and the frame checks behind them. */

#define CYM_WS_CLOSE_WAIT_MS ...
#define MG_MAX_RECV_SIZE ...

#define CYM_WS_DEFAULT_MAX ...
#define CYM_WS_HARD_MAX ...

int cym_ws_upgrade(struct mg_connection *c, struct mg_http_message *hm,
                   const char *headers, const char *proto, int compress,
                   uint64_t ping_ms, uint64_t pong_ms);
int cym_ws_client(struct mg_connection *c, const char *headers,
                  const char *offered, int compress, uint64_t max_msg,
                  uint64_t ping_ms, uint64_t pong_ms);
const char *cym_ws_subprotocol(struct mg_connection *c);
int cym_ws_compressed(struct mg_connection *c);
int cym_ws_peer_code(struct mg_connection *c);
int cym_ws_send(struct mg_connection *c, const char *buf, size_t len, int op);
int cym_ws_close(struct mg_connection *c, int code, const char *reason,
                 size_t len);
