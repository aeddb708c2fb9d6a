/* HTTP response writing helpers (cymongoose/_csrc/http_writers.c). */
const char *cym_http_status_text(int code);
