/* The open-loop clients of the bench (http_rate.c, ws_rate.c): requests
 * fall due on a fixed schedule whatever the server answers, each goes out
 * on a connection with none in flight (or waits for one), and its latency
 * counts from the time it fell due.  A client gives peers_send_due() its
 * way of sending one request and calls peer_answered() for each answer. */

#ifndef OPEN_LOOP_H
#define OPEN_LOOP_H

#include "load_gen.h"

/* The schedule: requests fall due at evenly spaced times, `rate` per second,
 * whatever the server answers; the ones not yet sent wait in a ring.  A 1 s
 * warm-up at the same rate comes first; requests due from t_meas to t_end
 * are measured (`due` counts them). */
struct schedule {
  double interval, next, t_meas, t_end;
  double *queue; /* due times of requests not yet sent */
  size_t cap, head, len;
  uint64_t due;
};

/* Starts now; false when out of memory. */
static bool schedule_start(struct schedule *s, double rate, double secs) {
  s->interval = 1e9 / rate;
  s->next = now_ns();
  s->t_meas = s->next + 1e9;
  s->t_end = s->t_meas + secs * 1e9;
  s->cap = (size_t) (rate * (secs + 7)) + 16;
  s->head = s->len = 0;
  s->due = 0;
  s->queue = (double *) malloc(s->cap * sizeof(*s->queue));
  return s->queue != NULL;
}

/* Queues the requests that fell due by `now`. */
static void schedule_advance(struct schedule *s, double now) {
  while (s->next <= now && s->next < s->t_end && s->len < s->cap) {
    s->queue[(s->head + s->len++) % s->cap] = s->next;
    if (s->next >= s->t_meas) s->due++;
    s->next += s->interval;
  }
}

/* The oldest waiting request's due time, taken off the ring (len > 0). */
static double schedule_take(struct schedule *s) {
  double due = s->queue[s->head];
  s->head = (s->head + 1) % s->cap, s->len--;
  return due;
}

/* Whether the run is over: every request sent and, of the measured ones,
 * `done` answered, or 5 s gone since the last fell due. */
static bool schedule_over(const struct schedule *s, double now, uint64_t done) {
  return s->next >= s->t_end && s->len == 0 && (done >= s->due || now > s->t_end + 5e9);
}

/* The one line http_rate and ws_rate print: rate is answers per second;
 * done < due means answers were still missing after the wait; all counts
 * every answer, warm-up included (for CPU per request over the whole run). */
static void schedule_report(const struct schedule *s, uint64_t done, uint64_t all, double secs,
                            const uint32_t *hist, int errors) {
  printf("RESULT due=%llu done=%llu all=%llu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f "
         "p999_us=%.1f errors=%d\n",
         (unsigned long long) s->due, (unsigned long long) done, (unsigned long long) all, secs,
         (double) done / secs, hist_percentile(hist, done, 0.50),
         hist_percentile(hist, done, 0.99), hist_percentile(hist, done, 0.999), errors);
  fflush(stdout);
}

/* The connections: at most one request in flight on each; idle ones wait
 * on a stack for the next request that falls due. */
struct peer {
  double due_ns; /* of the request in flight, 0 when idle */
  int measured;  /* that request counts */
  int open;
  int closed;    /* closed by the server while idle: http_rate opens it again */
};

static struct peer *s_peers;
static struct mg_connection **s_conns;
static int *s_idle, s_nidle, s_errors;
static uint64_t s_done, s_all;
static uint32_t *s_hist;

/* Room for `conns` connections; false when out of memory. */
static bool peers_alloc(int conns) {
  s_peers = (struct peer *) calloc((size_t) conns, sizeof(*s_peers));
  s_conns = (struct mg_connection **) calloc((size_t) conns, sizeof(*s_conns));
  s_idle = (int *) calloc((size_t) conns, sizeof(*s_idle));
  s_hist = hist_new();
  return s_peers != NULL && s_conns != NULL && s_idle != NULL && s_hist != NULL;
}

static void peer_idle(struct peer *p) {
  s_idle[s_nidle++] = (int) (p - s_peers);
}

/* The answer to p's request arrived. */
static void peer_answered(struct peer *p) {
  s_all++;
  if (p->measured) {
    hist_add(s_hist, (now_ns() - p->due_ns) / 1000.0);
    s_done++;
  }
  p->due_ns = 0;
  p->measured = 0;
  peer_idle(p);
}

/* Sends what fell due on idle connections; send_request(c) sends one. */
static void peers_send_due(struct schedule *sch, void (*send_request)(struct mg_connection *)) {
  while (sch->len > 0 && s_nidle > 0) {
    struct peer *p = &s_peers[s_idle[--s_nidle]];
    p->due_ns = schedule_take(sch);
    p->measured = p->due_ns >= sch->t_meas;
    send_request(s_conns[p - s_peers]);
  }
}

#endif
