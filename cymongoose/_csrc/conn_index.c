/* Connection id -> struct mg_connection, for lookups that Mongoose would do
 * by walking mgr->conns (a wakeup payload names its target by id: wakeup.c).
 *
 * cym_ev adds a connection on MG_EV_OPEN and removes it on MG_EV_CLOSE,
 * which Mongoose sends before it frees the struct, so every pointer in the
 * table is a live connection.  Connections whose events never reach cym_ev
 * (the wakeup pipe, Mongoose's DNS connections) are not in it.  Open
 * addressing with linear probing; a removal shifts the entries after it back
 * instead of leaving tombstones, so a lookup stops at the first empty slot. */

#define CYM_INDEX_MIN 64 /* slots; a power of two */

struct cym_conn_index {
  struct mg_connection **slots; /* NULL: empty */
  size_t cap;                   /* a power of two, or 0 before the first add */
  size_t n;
  int lossy; /* an add failed for want of memory: a miss walks the list */
};

static size_t cym_index_home(const struct cym_conn_index *x, unsigned long id) {
  /* Fibonacci hashing: ids are consecutive, and the high bits of the
   * product spread them over the table whatever its size. */
  return (size_t) (((uint64_t) id * 0x9E3779B97F4A7C15ull) >> 32) & (x->cap - 1);
}

static void cym_index_put(struct cym_conn_index *x, struct mg_connection *c) {
  size_t i = cym_index_home(x, c->id);
  while (x->slots[i] != NULL) i = (i + 1) & (x->cap - 1);
  x->slots[i] = c;
}

static int cym_index_resize(struct cym_conn_index *x, size_t cap) {
  struct mg_connection **old = x->slots;
  size_t i, old_cap = x->cap;
  struct mg_connection **slots =
      (struct mg_connection **) calloc(cap, sizeof(*slots));
  if (slots == NULL) return 0;
  x->slots = slots;
  x->cap = cap;
  for (i = 0; i < old_cap; i++) {
    if (old[i] != NULL) cym_index_put(x, old[i]);
  }
  free(old);
  return 1;
}

static void cym_index_add(struct cym_conn_index *x, struct mg_connection *c) {
  /* at most 3/4 full */
  if ((x->n + 1) * 4 > x->cap * 3 &&
      !cym_index_resize(x, x->cap == 0 ? CYM_INDEX_MIN : x->cap * 2)) {
    x->lossy = 1;
    return;
  }
  cym_index_put(x, c);
  x->n++;
}

static void cym_index_del(struct cym_conn_index *x, struct mg_connection *c) {
  size_t i, j, mask = x->cap - 1;
  if (x->cap == 0) return;
  for (i = cym_index_home(x, c->id); x->slots[i] != c; i = (i + 1) & mask) {
    if (x->slots[i] == NULL) return; /* never added (lossy, or no OPEN) */
  }
  x->slots[i] = NULL;
  x->n--;
  /* Shift back each following entry of the run whose home is not in
   * (i, j]: a lookup for it would otherwise stop at the hole at i. */
  for (j = (i + 1) & mask; x->slots[j] != NULL; j = (j + 1) & mask) {
    size_t h = cym_index_home(x, x->slots[j]->id);
    if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
      x->slots[i] = x->slots[j];
      x->slots[j] = NULL;
      i = j;
    }
  }
  /* Give the memory of a storm back once most of it has gone. */
  if (x->cap > CYM_INDEX_MIN && x->n * 8 < x->cap) cym_index_resize(x, x->cap / 2);
}

/* The live connection with this id, or NULL. */
static struct mg_connection *cym_index_get(const struct cym_conn_index *x,
                                           struct mg_mgr *mgr, unsigned long id) {
  struct mg_connection *c;
  if (x->cap > 0) {
    size_t i = cym_index_home(x, id);
    for (; (c = x->slots[i]) != NULL; i = (i + 1) & (x->cap - 1)) {
      if (c->id == id) return c;
    }
  }
  if (!x->lossy) return NULL;
  for (c = mgr->conns; c != NULL && c->id != id; c = c->next) (void) 0;
  return c;
}

static void cym_index_free(struct cym_conn_index *x) {
  free(x->slots);
  x->slots = NULL;
  x->cap = x->n = 0;
}
