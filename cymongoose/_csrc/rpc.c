/* JSON-RPC: a method list per Rpc object, one Python entry
 * point for every handler, and ok/err with fixed formats so that user text
 * never reaches printf as a format string. */

static void _cym_rpc_call(struct mg_rpc_req *r);

struct mg_rpc **cym_rpc_new(void) {
  return (struct mg_rpc **) calloc(1, sizeof(struct mg_rpc *));
}

void cym_rpc_free(struct mg_rpc **head) {
  mg_rpc_del(head, NULL);
  free(head);
}

/* Adds a method at the head of the list; returns the new entry, or NULL
 * when out of memory.  Every entry's fn_data is its Rpc's handle. */
struct mg_rpc *cym_rpc_add(struct mg_rpc **head, const char *method,
                           size_t len, void *handle) {
  struct mg_rpc *old = *head;
  mg_rpc_add(head, mg_str_n(method, len), _cym_rpc_call, handle);
  return *head == old ? NULL : *head;
}

/* Runs one frame; the response accumulates in out (free with
 * cym_rpc_out_free). */
void cym_rpc_process(struct mg_rpc **head, const char *frame, size_t len,
                     void *req_data, struct mg_iobuf *out) {
  struct mg_rpc_req r;
  memset(&r, 0, sizeof(r));
  out->align = 256; /* grow in steps, not two bytes at a time */
  r.head = head;
  r.pfn = mg_pfn_iobuf;
  r.pfn_data = out;
  r.req_data = req_data;
  r.frame = mg_str_n(frame, len);
  mg_rpc_process(&r);
}

void cym_rpc_out_free(struct mg_iobuf *out) { mg_iobuf_free(out); }

void cym_rpc_ok(struct mg_rpc_req *r, const char *json, size_t len) {
  mg_rpc_ok(r, "%.*s", (int) len, json);
}

/* message is already a JSON string literal.  A notification (no "id")
 * gets no error response, as it gets no success response (mg_rpc_ok). */
void cym_rpc_err(struct mg_rpc_req *r, int code, const char *message,
                 size_t len) {
  int idlen = 0;
  if (mg_json_get(r->frame, "$.id", &idlen) <= 0) return;
  mg_rpc_err(r, code, "%.*s", (int) len, message);
}
