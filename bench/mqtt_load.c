// MQTT load generator on Mongoose: P publishers, S subscribers, one topic.
//
//   mqtt_load URL PUBS SUBS QOS MESSAGES_PER_PUB [WINDOW [KEEP]]
//
// Every subscriber subscribes to "bench/t" at QOS; once all SUBACKs are in,
// every publisher sends MESSAGES_PER_PUB PUBLISH packets of 16 bytes (a
// CLOCK_MONOTONIC send time in the first 8) at QOS.  At most WINDOW messages
// (default 100) per publisher are ahead of what the subscribers have
// received, so the broker's buffers stay bounded and latency means something.
// With KEEP=1 the subscribers connect with clean_session=0 (kept sessions).
// Prints one line: deliveries, seconds, deliveries/s, p50 and p99 latency in
// microseconds (send to receive), and "lost" deliveries (expected - got)
// when it gave up after 10 s without progress.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "mongoose.h"

static int s_pubs, s_subs, s_qos, s_per_pub, s_window = 100;
static int s_open, s_subacked, s_keep;
static long s_sent, s_got, s_expected;
static double *s_lat;
static struct mg_connection **s_pub_conns;
static int *s_pub_sent;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// Small packets both ways: without TCP_NODELAY, Nagle and delayed ACKs add
// tens of milliseconds to the latency figures.
static void nodelay(struct mg_connection *c) {
  int on = 1;
  setsockopt((int) (size_t) c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static void sub_fn(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_CONNECT) nodelay(c);
  if (ev == MG_EV_MQTT_OPEN) {
    struct mg_mqtt_opts o;
    memset(&o, 0, sizeof(o));
    o.topic = mg_str("bench/t");
    o.qos = (uint8_t) s_qos;
    mg_mqtt_sub(c, &o);
  } else if (ev == MG_EV_MQTT_CMD) {
    struct mg_mqtt_message *mm = (struct mg_mqtt_message *) ev_data;
    if (mm->cmd == MQTT_CMD_SUBACK) s_subacked++;
  } else if (ev == MG_EV_MQTT_MSG) {
    struct mg_mqtt_message *mm = (struct mg_mqtt_message *) ev_data;
    double t;
    if (mm->data.len >= sizeof(t) && s_got < s_expected) {
      memcpy(&t, mm->data.buf, sizeof(t));
      s_lat[s_got] = now_us() - t;
    }
    s_got++;
  } else if (ev == MG_EV_ERROR) {
    fprintf(stderr, "subscriber: %s\n", (char *) ev_data);
  }
}

static void pub_fn(struct mg_connection *c, int ev, void *ev_data) {
  if (ev == MG_EV_CONNECT) nodelay(c);
  if (ev == MG_EV_MQTT_OPEN) s_open++;
  if (ev == MG_EV_ERROR) fprintf(stderr, "publisher: %s\n", (char *) ev_data);
  (void) c;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  struct mg_mgr mgr;
  struct mg_mqtt_opts opts;
  char id[32];
  int i;
  long last_got = -1;
  double start = 0, last_progress;
  if (argc < 6) {
    fprintf(stderr, "usage: %s URL PUBS SUBS QOS MESSAGES_PER_PUB [WINDOW [KEEP]]\n",
            argv[0]);
    return 2;
  }
  s_pubs = atoi(argv[2]), s_subs = atoi(argv[3]), s_qos = atoi(argv[4]);
  s_per_pub = atoi(argv[5]);
  if (argc > 6) s_window = atoi(argv[6]);
  if (argc > 7 && atoi(argv[7]) == 1) s_keep = 1;
  s_expected = (long) s_pubs * s_per_pub * s_subs;
  s_lat = calloc((size_t) s_expected, sizeof(double));
  s_pub_conns = calloc((size_t) s_pubs, sizeof(*s_pub_conns));
  s_pub_sent = calloc((size_t) s_pubs, sizeof(*s_pub_sent));
  mg_log_set(MG_LL_ERROR);
  mg_mgr_init(&mgr);
  memset(&opts, 0, sizeof(opts));
  opts.clean = true;
  opts.version = 4;
  opts.clean = !s_keep;
  for (i = 0; i < s_subs; i++) {
    snprintf(id, sizeof(id), "load-sub-%d", i);
    opts.client_id = mg_str(id);
    mg_mqtt_connect(&mgr, argv[1], &opts, sub_fn, NULL);
  }
  last_progress = now_us();
  while (s_subacked < s_subs && now_us() - last_progress < 10e6) mg_mgr_poll(&mgr, 10);
  opts.clean = true;
  for (i = 0; i < s_pubs; i++) {
    snprintf(id, sizeof(id), "load-pub-%d", i);
    opts.client_id = mg_str(id);
    s_pub_conns[i] = mg_mqtt_connect(&mgr, argv[1], &opts, pub_fn, NULL);
  }
  while (s_open < s_pubs && now_us() - last_progress < 10e6) mg_mgr_poll(&mgr, 10);
  start = last_progress = now_us();
  while (s_got < s_expected && now_us() - last_progress < 10e6) {
    // one message per publisher per round while the window allows: a
    // message counts as done once every subscriber has it (s_got / s_subs)
    for (i = 0; i < s_pubs; i++) {
      if (s_pub_sent[i] < s_per_pub &&
          s_sent - s_got / s_subs < (long) s_window * s_pubs) {
        struct mg_mqtt_opts p;
        char payload[16];
        double t = now_us();
        memset(&p, 0, sizeof(p));
        memcpy(payload, &t, sizeof(t));
        memset(payload + 8, 'x', 8);
        p.topic = mg_str("bench/t");
        p.message = mg_str_n(payload, sizeof(payload));
        p.qos = (uint8_t) s_qos;
        mg_mqtt_pub(s_pub_conns[i], &p);
        s_pub_sent[i]++, s_sent++;
      }
    }
    mg_mgr_poll(&mgr, s_sent < (long) s_pubs * s_per_pub ? 0 : 5);
    if (s_got != last_got) last_got = s_got, last_progress = now_us();
  }
  {
    double secs = (now_us() - start) / 1e6;
    long n = s_got < s_expected ? s_got : s_expected;
    qsort(s_lat, (size_t) n, sizeof(double), cmp);
    printf("deliveries=%ld seconds=%.3f rate=%.0f p50_us=%.0f p99_us=%.0f lost=%ld\n", s_got,
           secs, s_got / secs, n ? s_lat[n / 2] : 0.0, n ? s_lat[(long) (n * 0.99)] : 0.0,
           s_expected - n);
  }
  mg_mgr_free(&mgr);
  return 0;
}
