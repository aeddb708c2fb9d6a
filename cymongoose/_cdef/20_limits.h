/* Per-listener limits (cymongoose/_csrc/limits.c, cymongoose/limits.py). */

#define CYM_LIM_NONE ...
#define CYM_LIM_LINGER_MS ...

/* One line for the "cymongoose" logger (level as in logging). */
extern "Python" void _cym_limits_log(int level, const char *line);

int cym_limits_attach(struct mg_connection *c, int http, int64_t max_body,
                      int64_t max_head, uint64_t head_ms, uint64_t idle_ms,
                      int64_t max_conns, int64_t max_ws);
long cym_limits_count(struct mg_connection *c);
