/* Helpers of the HTTP response writers (cymongoose/_http_writers.py). */

/* Mongoose's reason phrase for a status code ("" when it has none), so
 * every response the package writes uses the same table as mg_http_reply. */
const char *cym_http_status_text(int code) {
  return mg_http_status_code_str(code);
}
