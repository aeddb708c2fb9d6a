/* Driving a Manager from an asyncio loop (cymongoose/_csrc/loop.c). */
int cym_loop_fd(struct mg_mgr *mgr);
int cym_loop_pending(struct mg_mgr *mgr);
int cym_send_now(struct mg_connection *c);
