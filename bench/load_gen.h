/* What the bench's C load generators share (ws_load.c, and through
 * open_loop.h ws_rate.c and http_rate.c): the clock, the latency histogram
 * and a cheap mg_random for the WebSocket clients. */

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

#endif
