/* Timers (cymongoose/timers.py, C in _csrc/timers.c).  Mongoose calls
 * _cym_timer directly as the timer function, with the Timer's handle. */

extern "Python" void _cym_timer(void *handle);

struct mg_timer *cym_timer_add(struct cym_mgr *m, uint64_t ms, int repeat,
                               int run_now, void *handle);
void cym_timer_free(struct cym_mgr *m, struct mg_timer *t);
int cym_timer_wait(struct cym_mgr *m, int ms);
