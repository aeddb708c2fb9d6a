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

#include "open_loop.h"


static char *s_payload;
static size_t s_size;
static int s_nopen;

static void send_request(struct mg_connection *c) {
  mg_ws_send(c, s_payload, s_size, WEBSOCKET_OP_TEXT);
}

static void fn(struct mg_connection *c, int ev, void *ev_data) {
  struct peer *p = (struct peer *) c->fn_data;
  (void) ev_data;
  if (ev == MG_EV_WS_OPEN) {
    p->open = 1;
    s_nopen++;
    peer_idle(p);
  } else if (ev == MG_EV_WS_MSG && p->due_ns != 0) {
    peer_answered(p);
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
  double rate, secs, start, now;
  struct schedule sch;

  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s URL CONNS RATE SECONDS [SIZE]\n", argv[0]);
    return 2;
  }
  conns = atoi(argv[2]);
  rate = atof(argv[3]);
  secs = atof(argv[4]);
  s_size = argc > 5 ? (size_t) atoi(argv[5]) : 32;
  if (conns < 1 || rate <= 0 || secs <= 0) return 2;
  s_payload = (char *) malloc(s_size + 1);
  if (s_payload == NULL || !peers_alloc(conns)) return 1;
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

  if (!schedule_start(&sch, rate, secs)) return 1;
  for (;;) {
    now = now_ns();
    schedule_advance(&sch, now);
    peers_send_due(&sch, send_request);
    if (s_errors > 0 || schedule_over(&sch, now, s_done)) break;
    mg_mgr_poll(&mgr, 0); /* busy: due times are kept to the microsecond */
  }
  schedule_report(&sch, s_done, s_all, secs, s_hist, s_errors);
  i = s_errors > 0 ? 1 : 0;
  mg_mgr_free(&mgr); /* its MG_EV_CLOSEs are not errors */
  return i;
}
