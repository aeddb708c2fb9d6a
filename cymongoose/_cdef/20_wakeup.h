/* Cross-thread wakeups (cymongoose/wakeup.py, C in _csrc/wakeup.c). */

struct cym_wake { ...; };

struct cym_wake *cym_wake_init(struct cym_mgr *m, int hidden);
unsigned long cym_wake_pipe_id(struct cym_wake *w);
int cym_wake_push(struct cym_wake *w, unsigned long id, const char *buf,
                  size_t len);
void cym_wake_close(struct cym_wake *w);
void cym_wake_free(struct cym_wake *w);
