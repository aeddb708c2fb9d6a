/* The ceiling: the benchmark servers written in C on the same Mongoose the
 * package vendors, compiled with the defines of build_ffi.py.
 *
 *   c_server http PORT          reply "ok" to every HTTP request
 *   c_server ws PORT            upgrade every request, echo every message
 *   c_server idle PORT N POLLS  wait for N connections, then time POLLS polls
 *
 * http and ws print "READY" once listening and serve until SIGTERM/SIGINT.
 * idle prints "READY", waits for N accepted connections, then prints
 * "RESULT <ns per connection per poll>" and exits. */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mongoose.h"

static volatile sig_atomic_t s_stop = 0;

static void on_signal(int signo) {
  (void) signo;
  s_stop = 1;
}

static void http_fn(struct mg_connection *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == MG_EV_HTTP_MSG) {
    mg_http_reply(c, 200, "Content-Type: text/plain\r\n", "ok");
  }
}

static void ws_fn(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_HTTP_MSG) {
    mg_ws_upgrade(c, (struct mg_http_message *) ev_data, NULL);
  } else if (ev == MG_EV_WS_MSG) {
    struct mg_ws_message *wm = (struct mg_ws_message *) ev_data;
    mg_ws_send(c, wm->data.buf, wm->data.len, wm->flags & 0x0F);
  }
}

static void idle_fn(struct mg_connection *c, int ev, void *ev_data) {
  (void) c, (void) ev, (void) ev_data;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static unsigned count_conns(struct mg_mgr *mgr) {
  unsigned n = 0;
  struct mg_connection *c;
  for (c = mgr->conns; c != NULL; c = c->next) {
    if (c->is_accepted) n++;
  }
  return n;
}

/* Per-connection cost of a poll with N idle connections: the same quantity
 * the Python servers measure around Manager.poll(0). */
static int run_idle(struct mg_mgr *mgr, unsigned want, int polls) {
  double t0;
  int i;
  while (!s_stop && count_conns(mgr) < want) mg_mgr_poll(mgr, 50);
  for (i = 0; i < polls / 10; i++) mg_mgr_poll(mgr, 0);  // warm caches
  t0 = now_ns();
  for (i = 0; i < polls; i++) mg_mgr_poll(mgr, 0);
  printf("RESULT %.2f\n", (now_ns() - t0) / polls / want);
  fflush(stdout);
  return 0;
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  char url[64];
  const char *mode = argc > 1 ? argv[1] : "";
  mg_event_handler_t fn;
  int rc = 0;

  if (argc < 3) {
    fprintf(stderr, "usage: %s http|ws PORT | idle PORT N POLLS\n", argv[0]);
    return 2;
  }
  if (strcmp(mode, "http") == 0) {
    fn = http_fn;
  } else if (strcmp(mode, "ws") == 0) {
    fn = ws_fn;
  } else if (strcmp(mode, "idle") == 0 && argc == 5) {
    fn = idle_fn;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  mg_log_set(MG_LL_NONE);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  mg_mgr_init(&mgr);
  mg_snprintf(url, sizeof(url), "http://127.0.0.1:%s", argv[2]);
  if (mg_http_listen(&mgr, url, fn, NULL) == NULL) {
    fprintf(stderr, "cannot listen on %s\n", url);
    return 1;
  }
  printf("READY\n");
  fflush(stdout);
  if (fn == idle_fn) {
    rc = run_idle(&mgr, (unsigned) atoi(argv[3]), atoi(argv[4]));
  } else {
    while (!s_stop) mg_mgr_poll(&mgr, 100);
  }
  mg_mgr_free(&mgr);
  return rc;
}
