/* WSGI environ helper (cymongoose/_csrc/wsgi.c). */
long cym_wsgi_head(const struct mg_http_message *hm, char *buf, size_t size);
