/* MQTT (cymongoose/_csrc/mqtt.c): connections that use our protocol handler,
 * and one-call helpers behind the Connection methods. */

struct mg_connection *cym_mqtt_connect(struct cym_mgr *m, const char *url,
                                       const struct mg_mqtt_opts *opts,
                                       uintptr_t state);
struct mg_connection *cym_mqtt_listen(struct cym_mgr *m, const char *url,
                                      uintptr_t state, int backlog);
uint16_t cym_mqtt_pub(struct mg_connection *c, const char *topic,
                      size_t topic_len, const char *msg, size_t msg_len,
                      int qos, int retain, struct mg_mqtt_prop *props,
                      size_t nprops);
void cym_mqtt_sub(struct mg_connection *c, const char *topic, size_t topic_len,
                  int qos, int unsub, struct mg_mqtt_prop *props,
                  size_t nprops);
bool cym_mqtt_publish(struct mg_connection *c, const char *topic,
                      size_t topic_len, const char *msg, size_t msg_len,
                      int flags, int id);
void cym_mqtt_disconnect(struct mg_connection *c);
int cym_mqtt_version(struct mg_connection *c);
int cym_mqtt_prop_type(int id);
#define CYM_MQTT_MALFORMED ...
uint64_t cym_mqtt_fields(uintptr_t addr, const char **at,
                         size_t *span);
void cym_mqtt_batch_acks(struct mg_connection *c);

void mg_mqtt_ping(struct mg_connection *);
void mg_mqtt_pong(struct mg_connection *);
