/* A hello-world HTTP server in C for bench/storm.py, built twice: on the
 * pristine vendored mongoose.c and on the copy with vendor/patches applied.
 *
 *   c_idle_server N POLLS
 *
 * Listens on 127.0.0.1 (a free port), prints "PORT <port>", then polls with
 * a 50 ms timeout and prints the number of accepted connections after every
 * poll that changed it.  Once N connections are accepted it times POLLS polls with a zero
 * timeout and prints "RESULT <wall ns per poll> <CPU ns per poll> <RSS KiB>",
 * after "MARK <accepted> <RSS KiB>" at the first poll with N/2 accepted,
 * then keeps serving (and printing counts) until stdin closes. */

#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "mongoose.h"

static unsigned long s_accepted = 0;

static void fn(struct mg_connection *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == MG_EV_ACCEPT) {
    s_accepted++;
  } else if (ev == MG_EV_HTTP_MSG) {
    mg_http_reply(c, 200, "Content-Type: text/plain\r\n", "hello world");
  }
}

static double ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static long rss_kib(void) {
  char line[256];
  long kib = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  }
  fclose(f);
  return kib;
}

static int stdin_closed(void) {
  fd_set rd;
  struct timeval tv = {0, 0};
  char buf[64];
  FD_ZERO(&rd);
  FD_SET(0, &rd);
  if (select(1, &rd, NULL, NULL, &tv) <= 0) return 0;
  return read(0, buf, sizeof(buf)) <= 0;
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  struct mg_connection *lsn;
  unsigned long want;
  unsigned long last = (unsigned long) -1;
  int polls, measured = 0, marked = 0, i;
  if (argc != 3) {
    fprintf(stderr, "usage: %s N POLLS\n", argv[0]);
    return 2;
  }
  want = strtoul(argv[1], NULL, 10);
  polls = atoi(argv[2]);
  mg_log_set(MG_LL_NONE);
  mg_mgr_init(&mgr);
  lsn = mg_http_listen(&mgr, "http://127.0.0.1:0", fn, NULL);
  if (lsn == NULL) {
    fprintf(stderr, "cannot listen\n");
    return 1;
  }
  printf("PORT %d\n", (int) mg_ntohs(lsn->loc.port));
  fflush(stdout);
  while (!stdin_closed()) {
    mg_mgr_poll(&mgr, 50);
    if (s_accepted != last) printf("%lu\n", last = s_accepted);
    if (!marked && s_accepted >= want / 2) {
      marked = 1;
      printf("MARK %lu %ld\n", s_accepted, rss_kib());
    }
    if (!measured && s_accepted >= want) {
      double t0, c0;
      measured = 1;
      for (i = 0; i < polls / 10 + 1; i++) mg_mgr_poll(&mgr, 0);  // warm caches
      t0 = ns(CLOCK_MONOTONIC);
      c0 = ns(CLOCK_PROCESS_CPUTIME_ID);
      for (i = 0; i < polls; i++) mg_mgr_poll(&mgr, 0);
      printf("RESULT %.0f %.0f %ld\n", (ns(CLOCK_MONOTONIC) - t0) / polls,
             (ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / polls, rss_kib());
    }
    fflush(stdout);
  }
  mg_mgr_free(&mgr);
  return 0;
}
