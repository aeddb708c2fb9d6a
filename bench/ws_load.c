/* WebSocket echo load generator on Mongoose (a client in C, so the client is
 * not the bottleneck).
 *
 *   ws_load URL CONNS SECONDS [SIZE [DEPTH]]
 *
 * Opens CONNS WebSocket connections to URL.  Each keeps DEPTH messages (1
 * unless given) of SIZE bytes in flight: it sends DEPTH, and one more for
 * each echo (with DEPTH 1, like wrk's one request per connection).  After a
 * 0.5 s warm-up it counts echoes for SECONDS and prints one line:
 *
 *   RESULT msgs=N secs=T rate=R p50_us=A p99_us=B errors=E
 *
 * Latency is send-to-echo time per message, at 1 us resolution (echoes come
 * back in order, so each connection keeps its send times in a ring).
 *
 * Build with -DMG_ENABLE_CUSTOM_RANDOM=1: Mongoose's default mg_random opens
 * /dev/urandom for every frame's mask, which made this client, not the
 * server, the bottleneck.  And build it with -DMG_ENABLE_EPOLL=0
 * -DMG_ENABLE_POLL=1: stock Mongoose's epoll build calls epoll_ctl twice
 * per message (the package's vendor patch 0081 removes that, but this
 * program builds the unpatched file), so with epoll this client spent more
 * per message than the servers it measured, and its core, not the server's,
 * set the rate. */

#include "load_gen.h"


#define MAX_DEPTH 64

struct peer {
  double sent_ns[MAX_DEPTH]; /* ring: the oldest unanswered send at head */
  unsigned head, inflight;
  int open;
};

static char *s_payload;
static size_t s_size;
static unsigned s_depth = 1;
static int s_open, s_errors, s_measuring, s_stopping;
static uint64_t s_count;
static uint32_t *s_hist;

static void send_one(struct mg_connection *c, struct peer *p) {
  p->sent_ns[(p->head + p->inflight++) % MAX_DEPTH] = now_ns();
  mg_ws_send(c, s_payload, s_size, WEBSOCKET_OP_TEXT);
}

static void fn(struct mg_connection *c, int ev, void *ev_data) {
  struct peer *p = (struct peer *) c->fn_data;
  (void) ev_data;
  if (ev == MG_EV_WS_OPEN) {
    p->open = 1;
    s_open++;
    while (p->inflight < s_depth) send_one(c, p);
  } else if (ev == MG_EV_WS_MSG && p->inflight > 0) {
    double sent = p->sent_ns[p->head];
    p->head = (p->head + 1) % MAX_DEPTH, p->inflight--;
    if (s_measuring) {
      hist_add(s_hist, (now_ns() - sent) / 1000.0);
      s_count++;
    }
    if (!s_stopping) send_one(c, p);
  } else if (ev == MG_EV_ERROR) {
    s_errors++;
  } else if (ev == MG_EV_CLOSE && p->open) {
    p->open = 0;
    s_open--;
  }
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  struct peer *peers;
  int i, conns;
  double secs, start, t0, t1;

  if (argc < 4) {
    fprintf(stderr, "usage: %s URL CONNS SECONDS [SIZE [DEPTH]]\n", argv[0]);
    return 2;
  }
  conns = atoi(argv[2]);
  secs = atof(argv[3]);
  s_size = argc > 4 ? (size_t) atoi(argv[4]) : 32;
  s_depth = argc > 5 ? (unsigned) atoi(argv[5]) : 1;
  if (conns < 1 || secs <= 0 || s_depth < 1 || s_depth > MAX_DEPTH) return 2;
  s_payload = (char *) malloc(s_size + 1);
  peers = (struct peer *) calloc((size_t) conns, sizeof(*peers));
  s_hist = hist_new();
  if (s_payload == NULL || peers == NULL || s_hist == NULL) return 1;
  memset(s_payload, 'x', s_size);

  mg_log_set(MG_LL_NONE);
  mg_mgr_init(&mgr);
  for (i = 0; i < conns; i++) {
    if (mg_ws_connect(&mgr, argv[1], fn, &peers[i], NULL) == NULL) return 1;
  }
  start = now_ns();
  while (s_open < conns && s_errors == 0 && now_ns() - start < 10e9) {
    mg_mgr_poll(&mgr, 10);
  }
  if (s_open < conns) {
    fprintf(stderr, "only %d of %d connections opened (%d errors)\n", s_open,
            conns, s_errors);
    return 1;
  }
  start = now_ns();
  while (now_ns() - start < 0.5e9) mg_mgr_poll(&mgr, 10);
  s_measuring = 1;
  t0 = now_ns();
  while ((t1 = now_ns()) - t0 < secs * 1e9) mg_mgr_poll(&mgr, 10);
  s_measuring = 0;
  s_stopping = 1;
  printf("RESULT msgs=%llu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f "
         "errors=%d\n",
         (unsigned long long) s_count, (t1 - t0) / 1e9,
         (double) s_count / ((t1 - t0) / 1e9), hist_percentile(s_hist, s_count, 0.50),
         hist_percentile(s_hist, s_count, 0.99), s_errors);
  fflush(stdout);
  mg_mgr_free(&mgr);
  return 0;
}
