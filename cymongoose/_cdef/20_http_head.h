/* A request head in one copy (cymongoose/_csrc/http_head.c). */
long cym_http_head(const struct mg_http_message *hm, char *buf, size_t size);
