/* MqttBroker's delivery engine (cymongoose/_csrc/mqtt_broker.c): connected
 * sessions' in-flight windows and queues, and cached routes. */

struct cym_broker;
struct cym_bsess;

struct cym_bitem {
  unsigned pid;
  int flags; /* QoS << 1 | RETAIN */
  int released;
  const char *topic;
  size_t topic_len;
  const char *data;
  size_t data_len;
  const char *props; /* MQTT 5 properties passed on, less the expiry */
  size_t props_len;
  uint64_t expire_at; /* wall-clock ms the message expires; 0: never */
};

/* Hangs on the listener (and the connections it accepts); free it only
 * once none of them is left. */
struct cym_broker *cym_broker_new(struct mg_connection *lsn, size_t max_packet,
                                  int acl);
void cym_broker_free(struct cym_broker *b);
uint64_t cym_broker_received(struct cym_broker *b);
void cym_broker_routes_clear(struct cym_broker *b);
int cym_broker_route(struct cym_broker *b, const char *topic, size_t n,
                     struct cym_bsess **sess, const uint8_t *qos, size_t nt,
                     struct mg_connection *writer);

struct cym_bsess *cym_bsess_attach(struct mg_connection *c,
                                   unsigned max_inflight, unsigned max_queued,
                                   unsigned next_pid, unsigned max_packet);
/* props: MQTT 5 properties passed on, less the Message Expiry Interval;
 * expire_at: wall-clock ms the message expires, 0: never. */
int cym_bsess_resume(struct cym_bsess *s, unsigned pid, const char *topic,
                     size_t tl, const char *data, size_t dl, int flags,
                     int released, const char *props, size_t pl,
                     uint64_t expire_at);
void cym_bsess_deliver(struct cym_bsess *s, const char *topic, size_t tl,
                       const char *data, size_t dl, int qos, int retain,
                       const char *props, size_t pl, uint64_t expire_at);
void cym_bsess_stats(struct cym_bsess *s, uint64_t out[5]);
int cym_bsess_item(struct cym_bsess *s, size_t i, struct cym_bitem *out);
void cym_bsess_free(struct cym_bsess *s);

/* MQTT 5 properties of a PUBLISH (or a will): 0, or a DISCONNECT reason
 * code; cut: offset and value of the Message Expiry Interval, offset of the
 * Will Delay Interval (the block's length when absent). */
int cym_mqtt_props_check(const char *block, size_t n, int will, size_t cut[3]);
/* Any MQTT 5 property block: the ids and value offsets of the properties
 * other than User Property (at most cap); -1: broken, -2: more than cap. */
int cym_mqtt_props_walk(const char *block, size_t n, uint8_t *ids, size_t *at,
                        int cap);
