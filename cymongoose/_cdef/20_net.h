/* DNS, SNTP and raw TCP/UDP: cymongoose/_csrc/net.c. */

int cym_net_resolve(struct mg_connection *c, const char *url);
void mg_resolve_cancel(struct mg_connection *);
void mg_sntp_request(struct mg_connection *c);
long cym_net_consume(struct mg_connection *c, size_t len);
void cym_net_set_dns(struct mg_mgr *mgr, const char *url, int inside);
const char *cym_net_dns(struct mg_mgr *mgr);
int cym_net_dns_timeout(struct mg_mgr *mgr, int ms);
