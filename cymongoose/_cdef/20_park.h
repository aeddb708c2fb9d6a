/* A worker thread writes a whole response while the poll thread waits
 * (cymongoose/_wsgi_exchange.py, C in _csrc/park.c). */
struct cym_park { ...; };
struct cym_park *cym_park_new(struct cym_mgr *m);
void cym_park_free(struct cym_park *p);
int cym_park_take(struct cym_park *p);
void cym_park_give(struct cym_park *p);
