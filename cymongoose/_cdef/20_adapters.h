/* WSGI/ASGI server helpers (cymongoose/_csrc/adapters.c). */
#define CYM_AD_CHUNK ...
#define CYM_AD_END ...
void cym_adapters_write(struct mg_connection *c, const char *buf, size_t len,
                        int how);
void cym_adapters_take_body(struct mg_connection *c,
                            struct mg_http_message *hm);
size_t cym_adapters_buffered(struct mg_connection *c,
                             struct mg_http_message *hm);
void cym_adapters_consume(struct mg_connection *c, size_t n);
void cym_adapters_body_done(struct mg_connection *c);
void cym_adapters_pause(struct mg_connection *c, int on);
void cym_adapters_unlisten(struct mg_connection *c);
int cym_adapters_ws_close(struct mg_connection *c, struct mg_str *reason);
