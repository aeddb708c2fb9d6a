/* Open-loop WebSocket echo load at a fixed rate, on Mongoose: ws_load's
 * messages sent on http_rate's schedule.
 *
 *   ws_rate URL CONNS RATE SECONDS [SIZE]
 *
 * Opens CONNS WebSocket connections to URL.  SIZE-byte messages (32 unless
 * given) fall due at evenly spaced times, RATE per second, whatever the
 * server answers.  A due message goes out on a connection with no message in
 * flight, or waits for one.  Its latency counts from the time it fell due, so
 * a server that stalls is charged for every message queued behind the stall.
 *
 * Why: ws_load's closed loop sends as fast as each server echoes, so a
 * faster server is loaded more, spends more of its time waking up for
 * smaller batches, and its CPU per message is not comparable with a slower
 * one's.  At the same offered rate both do the same batching, and CPU per
 * message compares what each spends on a message.
 *
 * After a 1 s warm-up at the same rate it counts messages due during
 * SECONDS, waits for their echoes (at most 5 s), and prints one line:
 *
 *   RESULT due=N done=M all=K secs=T rate=R p50_us=A p99_us=B p999_us=C errors=E
 *
 * as http_rate does (all counts every echo, warm-up included).  Build it as
 * ws_load is built (custom mg_random, poll()): see ws_load.c. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "latency_hist.h"
#include "mongoose.h"


struct peer {
  double due_ns; /* of the message in flight, 0 when idle */
  int measured;  /* that message counts */
  int open;
};

static char *s_payload;
static size_t s_size;
static struct peer *s_peers;
static struct mg_connection **s_conns;
static int *s_idle, s_nidle, s_nopen, s_errors;
static uint64_t s_done, s_all;
static uint32_t *s_hist;

/* Masks only need to vary, not to be secret, in a load generator. */
bool mg_random(void *buf, size_t len) {
  static uint64_t x = 0x9E3779B97F4A7C15ULL;
  unsigned char *p = (unsigned char *) buf;
  size_t i;
  for (i = 0; i < len; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (unsigned char) x;
  }
  return true;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static void fn(struct mg_connection *c, int ev, void *ev_data) {
  struct peer *p = (struct peer *) c->fn_data;
  (void) ev_data;
  if (ev == MG_EV_WS_OPEN) {
    p->open = 1;
    s_nopen++;
    s_idle[s_nidle++] = (int) (p - s_peers);
  } else if (ev == MG_EV_WS_MSG && p->due_ns != 0) {
    s_all++;
    if (p->measured) {
      hist_add(s_hist, (now_ns() - p->due_ns) / 1000.0);
      s_done++;
    }
    p->due_ns = 0;
    p->measured = 0;
    s_idle[s_nidle++] = (int) (p - s_peers);
  } else if (ev == MG_EV_ERROR) {
    s_errors++;
  } else if (ev == MG_EV_CLOSE && p->open) {
    s_errors++; /* an echo server has no reason to close: the run is void */
    p->open = 0;
  }
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  int i, conns;
  double rate, secs, interval, start, t_meas, t_end, next, now;
  double *queue; /* due times of messages not yet sent (a ring) */
  size_t qcap, qhead = 0, qlen = 0;
  uint64_t due = 0;

  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s URL CONNS RATE SECONDS [SIZE]\n", argv[0]);
    return 2;
  }
  conns = atoi(argv[2]);
  rate = atof(argv[3]);
  secs = atof(argv[4]);
  s_size = argc > 5 ? (size_t) atoi(argv[5]) : 32;
  if (conns < 1 || rate <= 0 || secs <= 0) return 2;
  interval = 1e9 / rate;
  qcap = (size_t) (rate * (secs + 7)) + 16;
  queue = (double *) malloc(qcap * sizeof(*queue));
  s_payload = (char *) malloc(s_size + 1);
  s_peers = (struct peer *) calloc((size_t) conns, sizeof(*s_peers));
  s_conns = (struct mg_connection **) calloc((size_t) conns, sizeof(*s_conns));
  s_idle = (int *) calloc((size_t) conns, sizeof(*s_idle));
  s_hist = hist_new();
  if (queue == NULL || s_payload == NULL || s_peers == NULL || s_conns == NULL ||
      s_idle == NULL || s_hist == NULL)
    return 1;
  memset(s_payload, 'x', s_size);

  mg_log_set(MG_LL_NONE);
  mg_mgr_init(&mgr);
  for (i = 0; i < conns; i++) {
    if ((s_conns[i] = mg_ws_connect(&mgr, argv[1], fn, &s_peers[i], NULL)) == NULL) return 1;
  }
  start = now_ns();
  while (s_nopen < conns && s_errors == 0 && now_ns() - start < 10e9) mg_mgr_poll(&mgr, 10);
  if (s_nopen < conns) {
    fprintf(stderr, "only %d of %d connections opened (%d errors)\n", s_nopen, conns,
            s_errors);
    return 1;
  }

  start = next = now_ns();
  t_meas = start + 1e9;
  t_end = t_meas + secs * 1e9;
  for (;;) {
    now = now_ns();
    while (next <= now && next < t_end && qlen < qcap) { /* messages falling due */
      queue[(qhead + qlen++) % qcap] = next;
      if (next >= t_meas) due++;
      next += interval;
    }
    while (qlen > 0 && s_nidle > 0) {
      int k = s_idle[--s_nidle];
      struct peer *p = &s_peers[k];
      p->due_ns = queue[qhead];
      p->measured = p->due_ns >= t_meas;
      qhead = (qhead + 1) % qcap, qlen--;
      mg_ws_send(s_conns[k], s_payload, s_size, WEBSOCKET_OP_TEXT);
    }
    if (s_errors > 0) break;
    if (next >= t_end && qlen == 0) {
      if (s_done >= due || now > t_end + 5e9) break;
    }
    mg_mgr_poll(&mgr, 0); /* busy: due times are kept to the microsecond */
  }
  printf("RESULT due=%llu done=%llu all=%llu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f "
         "p999_us=%.1f errors=%d\n",
         (unsigned long long) due, (unsigned long long) s_done, (unsigned long long) s_all, secs,
         (double) s_done / secs, hist_percentile(s_hist, s_done, 0.50),
         hist_percentile(s_hist, s_done, 0.99), hist_percentile(s_hist, s_done, 0.999),
         s_errors);
  fflush(stdout);
  i = s_errors > 0 ? 1 : 0;
  mg_mgr_free(&mgr); /* its MG_EV_CLOSEs are not errors */
  return i;
}
