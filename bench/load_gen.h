/* What the bench's C load generators share (ws_load.c, ws_rate.c,
 * http_rate.c): the clock, the latency histogram, a cheap mg_random for the
 * WebSocket clients, and the open-loop schedule of http_rate and ws_rate. */

#ifndef LOAD_GEN_H
#define LOAD_GEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "latency_hist.h"
#include "mongoose.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

#if MG_ENABLE_CUSTOM_RANDOM
/* Masks only need to vary, not to be secret, in a load generator; Mongoose's
 * default mg_random opens /dev/urandom for every frame's mask, which made
 * the client, not the server, the bottleneck. */
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
#endif

/* Open loop (inline: ws_load has no use for it): requests fall due at evenly spaced times, `rate` per second,
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
static inline bool schedule_start(struct schedule *s, double rate, double secs) {
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
static inline void schedule_advance(struct schedule *s, double now) {
  while (s->next <= now && s->next < s->t_end && s->len < s->cap) {
    s->queue[(s->head + s->len++) % s->cap] = s->next;
    if (s->next >= s->t_meas) s->due++;
    s->next += s->interval;
  }
}

/* The oldest waiting request's due time, taken off the ring (len > 0). */
static inline double schedule_take(struct schedule *s) {
  double due = s->queue[s->head];
  s->head = (s->head + 1) % s->cap, s->len--;
  return due;
}

/* Whether the run is over: every request sent and, of the measured ones,
 * `done` answered, or 5 s gone since the last fell due. */
static inline bool schedule_over(const struct schedule *s, double now, uint64_t done) {
  return s->next >= s->t_end && s->len == 0 && (done >= s->due || now > s->t_end + 5e9);
}

/* The one line http_rate and ws_rate print: rate is answers per second;
 * done < due means answers were still missing after the wait; all counts
 * every answer, warm-up included (for CPU per request over the whole run). */
static inline void schedule_report(const struct schedule *s, uint64_t done, uint64_t all,
                                   double secs, const uint32_t *hist, int errors) {
  printf("RESULT due=%llu done=%llu all=%llu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f "
         "p999_us=%.1f errors=%d\n",
         (unsigned long long) s->due, (unsigned long long) done, (unsigned long long) all, secs,
         (double) done / secs, hist_percentile(hist, done, 0.50),
         hist_percentile(hist, done, 0.99), hist_percentile(hist, done, 0.999), errors);
  fflush(stdout);
}

#endif
