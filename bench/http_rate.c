/* Open-loop HTTP load at a fixed rate, on Mongoose (like wrk2).
 *
 *   http_rate URL CONNS RATE SECONDS
 *
 * Requests fall due at evenly spaced times, RATE per second, whatever the
 * server answers.  A due request goes out on an idle keep-alive connection
 * (CONNS of them; one the server closes while idle is opened again), or
 * waits for one to become idle.  Its latency counts from
 * the time it fell due, so a server that stalls is charged for every request
 * queued behind the stall (no coordinated omission).  wrk's closed loop
 * cannot compare the latency of two servers of different speeds: each of
 * its connections sends only once answered, so the slower server is loaded
 * less and its latency is the number of connections over its own rate.
 *
 * After a 1 s warm-up at the same rate it counts requests due during
 * SECONDS, waits for their answers (at most 5 s), and prints one line:
 *
 *   RESULT due=N done=M all=K secs=T rate=R p50_us=A p99_us=B p999_us=C errors=E
 *
 * rate is answers per second; done < due means answers were still missing
 * after the wait; all counts every answer, warm-up included (for CPU per
 * request over the whole run).  Latency is at 1 us resolution, up to 200 ms. */

#include "open_loop.h"


static const char *s_request;
static size_t s_request_len;
static int s_nclosed;

static void send_request(struct mg_connection *c) {
  mg_send(c, s_request, s_request_len);
}

static void fn(struct mg_connection *c, int ev, void *ev_data) {
  struct peer *p = (struct peer *) c->fn_data;
  (void) ev_data;
  if (ev == MG_EV_CONNECT) {
    p->open = 1;
    peer_idle(p);
  } else if (ev == MG_EV_HTTP_MSG) {
    peer_answered(p);
  } else if (ev == MG_EV_ERROR) {
    s_errors++;
  } else if (ev == MG_EV_CLOSE) {
    int k = (int) (p - s_peers), i;
    if (p->open && p->due_ns != 0) s_errors++; /* lost a request */
    /* A server may close a keep-alive connection while it is idle (gunicorn
     * does): it leaves the idle list, and the main loop opens another. */
    for (i = 0; i < s_nidle; i++) {
      if (s_idle[i] == k) {
        s_idle[i] = s_idle[--s_nidle];
        break;
      }
    }
    if (p->open && p->due_ns == 0) p->closed = 1, s_nclosed++;
    p->open = 0;
    s_conns[k] = NULL;
  }
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  int i, conns;
  double rate, secs, start, now;
  struct schedule sch;
  struct mg_str host;
  static char req[256];

  if (argc != 5) {
    fprintf(stderr, "usage: %s URL CONNS RATE SECONDS\n", argv[0]);
    return 2;
  }
  conns = atoi(argv[2]);
  rate = atof(argv[3]);
  secs = atof(argv[4]);
  if (conns < 1 || rate <= 0 || secs <= 0) return 2;
  host = mg_url_host(argv[1]);
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %.*s\r\n\r\n", mg_url_uri(argv[1]),
           (int) host.len, host.buf);
  s_request = req;
  s_request_len = strlen(req);
  if (!peers_alloc(conns)) return 1;

  mg_log_set(MG_LL_NONE);
  mg_mgr_init(&mgr);
  for (i = 0; i < conns; i++) {
    if ((s_conns[i] = mg_http_connect(&mgr, argv[1], fn, &s_peers[i])) == NULL) return 1;
  }
  start = now_ns();
  while (s_nidle < conns && s_errors == 0 && now_ns() - start < 10e9) mg_mgr_poll(&mgr, 10);
  if (s_nidle < conns) {
    fprintf(stderr, "only %d of %d connections opened (%d errors)\n", s_nidle, conns, s_errors);
    return 1;
  }

  if (!schedule_start(&sch, rate, secs)) return 1;
  for (;;) {
    now = now_ns();
    schedule_advance(&sch, now);
    for (i = 0; s_nclosed > 0 && i < conns; i++) {
      if (s_peers[i].closed) {
        s_peers[i].closed = 0, s_nclosed--;
        s_conns[i] = mg_http_connect(&mgr, argv[1], fn, &s_peers[i]);
        if (s_conns[i] == NULL) s_errors++;
      }
    }
    peers_send_due(&sch, send_request);
    if (s_errors > 0 || schedule_over(&sch, now, s_done)) break;
    mg_mgr_poll(&mgr, 0); /* busy: due times are kept to the microsecond */
  }
  schedule_report(&sch, s_done, s_all, secs, s_hist, s_errors);
  mg_mgr_free(&mgr);
  return s_errors > 0 ? 1 : 0;
}
