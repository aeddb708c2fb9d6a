/* Timers: Mongoose's own timer list.  Every timer runs cym_timer_fn, whose
 * argument packs the Manager's slot and the Timer's id, which it hands to
 * the Python timer dispatcher (_cym_timer): the lookup events use too. */

static void _cym_timer(unsigned slot, unsigned long id);

static void cym_timer_fn(void *arg) {
  uintptr_t key = (uintptr_t) arg;
  cym_python_ran();
  _cym_timer((unsigned) (key >> 32), (unsigned long) (key & 0xFFFFFFFFu));
}

/* A timer Mongoose allocates; AUTODELETE is added by mg_timer_add, so a
 * one-shot timer is freed by Mongoose right after its only call.  `id`
 * fits 32 bits (timers.py). */
struct mg_timer *cym_timer_add(struct cym_mgr *m, uint64_t ms, int repeat,
                               int run_now, unsigned long id) {
  unsigned flags = (repeat ? MG_TIMER_REPEAT : 0) |
                   (run_now ? MG_TIMER_RUN_NOW : 0);
  uintptr_t key = ((uintptr_t) m->slot << 32) | (uintptr_t) (id & 0xFFFFFFFFu);
  return mg_timer_add(&m->mgr, ms, flags, cym_timer_fn, (void *) key);
}

/* Unlinks and frees a timer that has not been freed by Mongoose yet.  Only
 * safe outside mg_timer_poll (Python calls it before mg_mgr_poll). */
void cym_timer_free(struct cym_mgr *m, struct mg_timer *t) {
  mg_timer_free(&m->mgr.timers, t);
  mg_free(t);
}

/* The I/O wait for a poll of `ms`, shortened so that the next timer fires
 * on time: Mongoose only looks at timers after the wait, whatever its
 * length.  A timer not armed yet (expire == 0) is armed by the next poll,
 * so that poll does not wait at all. */
int cym_timer_wait(struct cym_mgr *m, int ms) {
  uint64_t now = mg_millis();
  struct mg_timer *t;
  for (t = m->mgr.timers; t != NULL; t = t->next) {
    uint64_t left = t->expire > now ? t->expire - now : 0;
    /* A repeating 0 ms timer runs once per poll rather than
     * turning every poll into a busy loop. */
    if (t->period_ms == 0 && (t->flags & MG_TIMER_CALLED)) continue;
    if (t->expire == 0) left = 0;
    if (left > INT_MAX) left = INT_MAX;
    if (ms < 0 || left < (uint64_t) ms) ms = (int) left;
  }
  return ms;
}
