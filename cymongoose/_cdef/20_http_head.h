/* A request head in one copy (cymongoose/_csrc/http_head.c). */
long cym_http_head(uintptr_t hm_addr, char *buf, size_t size, int lower_names);
int cym_http_wants_ws(uintptr_t hm_addr);
