/* Who may touch the manager besides its poller: a worker writing a whole
 * response, the standby polling while the poll thread runs an application
 * (cymongoose/_wsgi_exchange.py, wsgi.py; C in _csrc/park.c). */
struct cym_park { ...; };
struct cym_park *cym_park_new(struct cym_mgr *m);
void cym_park_free(struct cym_park *p);
int cym_park_take(struct cym_park *p);
void cym_park_give(struct cym_park *p);
int cym_park_give_sending(struct cym_park *p, struct mg_connection *c);
int cym_park_leave(struct cym_park *p, int ms);
int cym_park_return(struct cym_park *p);
volatile int *cym_park_progress(struct cym_park *p);
void cym_park_reclaim(struct cym_park *p);
int cym_park_standby(struct cym_park *p);
int cym_park_standby_done(struct cym_park *p, int give_up);
void cym_park_close(struct cym_park *p);
