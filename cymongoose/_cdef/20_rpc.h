/* JSON-RPC: cymongoose/_csrc/rpc.c. */

extern "Python" void _cym_rpc_call(struct mg_rpc_req *r);

struct mg_rpc **cym_rpc_new(void);
void cym_rpc_free(struct mg_rpc **head);
struct mg_rpc *cym_rpc_add(struct mg_rpc **head, const char *method,
                           size_t len, void *handle);
void cym_rpc_process(struct mg_rpc **head, const char *frame, size_t len,
                     void *req_data, struct mg_iobuf *out);
void cym_rpc_out_free(struct mg_iobuf *out);
void cym_rpc_ok(struct mg_rpc_req *r, const char *json, size_t len);
void cym_rpc_err(struct mg_rpc_req *r, int code, const char *message,
                 size_t len);
