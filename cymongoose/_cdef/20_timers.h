/* Timers (cymongoose/timers.py, C in _csrc/timers.c).  Every timer calls
 * _cym_timer with its Manager's slot and its own id. */

extern "Python" void _cym_timer(unsigned slot, unsigned long id);

struct mg_timer *cym_timer_add(struct cym_mgr *m, uint64_t ms, int repeat,
                               int run_now, unsigned long id);
void cym_timer_free(struct cym_mgr *m, struct mg_timer *t);
int cym_timer_wait(struct cym_mgr *m, int ms);
