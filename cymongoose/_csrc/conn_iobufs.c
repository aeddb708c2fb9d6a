/* Giving back the I/O buffers of idle connections.
 *
 * Mongoose grows a connection's receive and send buffers in steps of
 * MG_IO_SIZE (16 KiB on Unix) and keeps them, empty, for as long as the
 * connection lives: after one request an idle keep-alive connection, or an
 * MQTT client after its CONNACK, holds 32 KiB.  One poll in every
 * CYM_IOBUF_IDLE_MS (cym_mgr_poll marks it, core.c) frees the empty buffers
 * of each connection that had no MG_EV_READ or MG_EV_WRITE since the
 * previous such poll, so a connection gives them back after 1 to 2 idle
 * seconds; its next read or send allocates again.  Busy connections keep
 * theirs, so their throughput does not pay for reallocations.
 *
 * The "had I/O" mark needs one bit per connection and struct mg_connection
 * has no spare field but c->prof, which Mongoose only uses when built with
 * MG_ENABLE_PROFILE (mg_alloc_conn zeroes it): the mark is c->prof.len;
 * vendor patch 0081 keeps each socket's epoll interest in c->prof.align. */

#if MG_ENABLE_PROFILE
#error "conn_iobufs.c keeps its mark in c->prof, which MG_ENABLE_PROFILE needs"
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define CYM_IOBUF_IDLE_MS 1000
/* glibc keeps freed chunks inside its heap resident: after a sweep that
 * freed this much, malloc_trim hands their whole pages back to the system
 * (a storm's worth of buffers, 32 KiB per client, would otherwise stay in
 * the process's RSS until reused). */
#define CYM_IOBUF_TRIM_BYTES (4u << 20)

static void cym_iobuf_release(struct mg_iobuf *io, size_t *freed) {
  if (io->len == 0 && io->size > 0) {
    *freed += io->size;
    mg_iobuf_free(io);
  }
}

/* After a marked poll. */
static void cym_iobufs_trim(size_t freed) {
#if defined(__GLIBC__)
  if (freed >= CYM_IOBUF_TRIM_BYTES) malloc_trim(0);
#else
  (void) freed;
#endif
}

/* On MG_EV_READ and MG_EV_WRITE. */
static void cym_iobufs_touch(struct mg_connection *c) { c->prof.len = 1; }

/* On MG_EV_POLL of a marked poll; adds the bytes it frees to *freed. */
static void cym_iobufs_sweep(struct mg_connection *c, size_t *freed) {
  if (c->prof.len != 0) {
    c->prof.len = 0;
    return;
  }
  cym_iobuf_release(&c->recv, freed);
  cym_iobuf_release(&c->send, freed);
  /* Not during a handshake: the built-in TLS stack keeps offsets into it. */
  if (!c->is_tls_hs) cym_iobuf_release(&c->rtls, freed);
}
