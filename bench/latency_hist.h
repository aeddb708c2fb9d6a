/* The latency histogram of the bench's C load generators (through
 * load_gen.h): one bucket per microsecond up to HIST_US; latencies above
 * land in the last bucket. */

#ifndef LATENCY_HIST_H
#define LATENCY_HIST_H

#include <stdint.h>
#include <stdlib.h>

#define HIST_US 200000

/* A zeroed histogram, or NULL when out of memory. */
static uint32_t *hist_new(void) { return (uint32_t *) calloc(HIST_US, sizeof(uint32_t)); }

static void hist_add(uint32_t *hist, double us) {
  hist[us < HIST_US ? (size_t) us : HIST_US - 1]++;
}

/* The q-quantile (0..1) of the `count` latencies in `hist`, in us. */
static double hist_percentile(const uint32_t *hist, uint64_t count, double q) {
  uint64_t target = (uint64_t) (q * (double) count), seen = 0;
  size_t i;
  for (i = 0; i < HIST_US; i++) {
    seen += hist[i];
    if (seen > target) return (double) i + 0.5;
  }
  return HIST_US;
}

#endif
