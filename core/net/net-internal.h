/* zltk — core/net's private header: connection internals shared by
 * conn.c, conn-send.c, client.c and server.c, and the entry points the
 * layer above (core/plugin) may use (at the end).
 *
 * Dependencies point one way: a client or a server owns its connections
 * and calls down into conn.c; conn.c reaches its owner only through the
 * owner's ops table (zl__conn_owner_ops_t), never by name. */
#ifndef ZLTK_NET_INTERNAL_H
#define ZLTK_NET_INTERNAL_H

#include "zl-internal.h"

#include <zltk/client.h>
#include <zltk/conn.h>
#include <zltk/net.h>
#include <zltk/server.h>

typedef struct zl__group zl__group_t;

/* What a connection needs from its owner (a client, a server), one const
 * table per kind of owner, as libevent's bufferevent_ops: referenced once
 * from the owner's shared zl__conn_cfg_t, so it costs a connection no
 * bytes.  All hooks run on the connection's poller thread. */
typedef struct zl__conn_owner_ops {
    /* zl_conn_name() gives "<kind>#<serial>". */
    const char *kind;
    /* zl_conn_close() on a connection that is not open (connecting,
     * waiting to reconnect, or flushing an earlier close) ends it at once;
     * otherwise only a connection not yet open ends at once and a flush
     * in progress goes on. */
    bool close_unopened_now;
    /* The group (manager list) the connection belongs to on its poller.
     * Required. */
    zl__group_t *(*group)(zl_conn_t *c);
    /* Optional.  The connection failed while open and the user did not
     * close it (on_err delivered).  Return true to take it over (the
     * owner reconnects it); false lets it close. */
    bool (*on_lost)(zl_conn_t *c);
    /* Optional.  After the handler's on_closed: the owner lets go of the
     * connection and sets c->owner to NULL (the owner may be freed). */
    void (*on_closed)(zl_conn_t *c);
} zl__conn_owner_ops_t;

/* Resolved options, shared by all connections of one client or server. */
typedef struct zl__conn_cfg {
    zl_conn_handler_t h;
    size_t high_water, low_water;
    uint64_t send_timeout_ms; /* 0: none */
    uint64_t manager_ms;
    uint32_t idle_timeout_ms; /* 0: none */
    uint32_t keepalive_ms;    /* 0: no SO_KEEPALIVE */
    int sndbuf, rcvbuf;
    void *data; /* initial zl_conn_get_data() */
    const char *kind; /* unused: ops->kind names the connections */
    const zl__conn_owner_ops_t *ops; /* set by the owner after
                                        zl__conn_cfg_init() */
} zl__conn_cfg_t;

void zl__conn_cfg_init(zl__conn_cfg_t *cfg, const zl_conn_options_t *o,
                       const zl_conn_handler_t *h, void *data,
                       const char *kind);

/* net.c: a as a kernel address in *ss (an AF_UNIX one rebuilt from its
 * path; "@name" is abstract); returns its length.  Any thread. */
socklen_t zl__addr_sockaddr(const zl_addr_t *a, struct sockaddr_storage *ss);
/* zl__sock_setup() for an AF_UNIX fd: the buffer sizes (and SO_NOSIGPIPE
 * where it exists), none of the TCP options (TCP_NODELAY, keepalive). */
void zl__sock_setup_unix(int fd, const zl__conn_cfg_t *cfg);

/* options.c: 0 (where a field has no "off") or contradicting values are
 * refused with -EINVAL and a message that names who, the field and init
 * (the ZL_*_OPTIONS_INIT to start from).  Any thread. */
int zl__conn_options_check(const zl_conn_options_t *o, const char *who,
                           const char *init);
int zl__client_options_check(const zl_client_options_t *o);
int zl__server_options_check(const zl_server_options_t *o);

/* A send-queue segment: bytes [off, buf->len) of buf are still to go. */
typedef struct zl__seg {
    struct zl__seg *next;
    zl_buf_t *buf;
    size_t off;
    bool own; /* our copy buffer: later sends may append to it */
} zl__seg_t;

/* A group: the connections of one server (or one client) on one poller,
 * with one manager timer for all of them, so an idle connection costs no
 * timer of its own.  Poller thread only. */
struct zl__group {
    zl_poller_t *poller;
    const zl__conn_cfg_t *cfg;
    struct zl_conn *head;
    zl_timer_t *timer;
    size_t count;
};

enum {
    ZL__CS_CONNECTING, /* client: resolving or connecting */
    ZL__CS_OPEN,       /* connected / accepted */
    ZL__CS_WAIT,       /* client: waiting to reconnect */
    ZL__CS_CLOSING,    /* graceful close: flushing the queue */
    ZL__CS_CLOSED      /* fd closed, on_closed posted or delivered */
};

enum {
    ZL__CF_PAUSED = 1u << 0,   /* reading paused by the handler */
    ZL__CF_WANT_W = 1u << 1,   /* ZL_EV_WRITE registered */
    ZL__CF_BUSY = 1u << 2,     /* above the high watermark */
    ZL__CF_ERRED = 1u << 3,    /* on_err delivered */
    ZL__CF_SHUT_WR = 1u << 4,  /* half-close requested */
    ZL__CF_SHUT_DONE = 1u << 5,/* shutdown(SHUT_WR) done */
    ZL__CF_READ_EOF = 1u << 6, /* peer sent end of stream */
    ZL__CF_USER_CLOSE = 1u << 7, /* close/abort requested by the user */
    ZL__CF_REGISTERED = 1u << 8, /* fd is in the poller */
    ZL__CF_FLUSH_NOTE = 1u << 9, /* queue was non-empty: on_flush due */
    ZL__CF_WANT_R = 1u << 10,    /* ZL_EV_READ registered */
    ZL__CF_HALF = 1u << 11,      /* zl_conn_set_half_close(): the peer's
                                    end of stream leaves sending open */
    ZL__CF_GROUPED = 1u << 12,   /* in its owner's group */
    ZL__CF_READ_MORE = 1u << 13, /* continue_read task pending */
    ZL__CF_ACTIVE = 1u << 14     /* bytes moved since the last tick */
};

/* The send queue: allocated when bytes first wait, freed when it drains,
 * so an idle connection carries only a NULL pointer for it. */
typedef struct zl__sendq {
    zl__seg_t *head, *tail;
    size_t queued;
} zl__sendq_t;

/* Kept small: an idle connection should cost well under 200 bytes of user
 * memory (ZLToolKit's users hold 10k+ of them). */
struct zl_conn {
    atomic_int refs;
    int fd;
    uint16_t flags;
    uint8_t state;
    atomic_bool ending; /* see zl_conn_is_closing(): read by any thread */
    uint32_t serial;      /* for zl_conn_name() */
    uint32_t progress_ms; /* low 32 bits of zl_now_ms() when the queue last
                             moved; compared with wrap-around */
    uint32_t active_ms;   /* the same, at the first manager tick that saw
                             ZL__CF_ACTIVE: the idle timeout's start.  The
                             I/O path only sets the flag, no clock read */
    zl_poller_t *poller;
    /* The client or server: each begins with its zl__conn_cfg_t, so this
     * is also the configuration.  NULL after on_closed. */
    void *owner;
    void *data;
    /* In the owner's group on this poller (ZL__CF_GROUPED).  While in no
     * group, the slot of prev holds the owner's ops instead, so that
     * zl_conn_name() still works once on_closed let go of the owner. */
    union {
        struct zl_conn *prev;
        const zl__conn_owner_ops_t *gone_ops;
    };
    struct zl_conn *next;
    zl__sendq_t *sq;
    /* The low 32 bits of zl_conn_bytes_sent() / _received(); the high
     * words live in the address box (zl__conn_count()). */
    uint32_t sent_lo, received_lo;
    /* The peer, in one of three forms: 0 (none yet); an IPv4 peer packed
     * inline (bit 0 set: address in bits 32..63, port in bits 16..31, both
     * in network order); or a zl__conn_box_t * (bit 0 clear).  The box,
     * allocated on demand (an IPv6 peer, zl_conn_peer() or zl_conn_local(),
     * a counter's carry, closing the fd), holds both addresses as
     * zl_addr_t, so an idle IPv4 connection stores no address of its
     * own beyond these 8 bytes.  Owner thread; frozen once the fd is
     * closed (any thread may read it after on_closed). */
    uint64_t peer;
};

/* A connection's addresses and its counters' high words (see peer). */
typedef struct zl__conn_box {
    zl_addr_t peer, local;
    uint32_t sent_hi, received_hi;
    bool local_known; /* local is filled in (getsockname() done) */
} zl__conn_box_t;

/* Out of line, on the owner thread: the box, allocated (NULL on ENOMEM). */
zl__conn_box_t *zl__conn_box(zl_conn_t *c);
/* Set the peer (a fresh connection or an accept()), or forget both
 * addresses (sa NULL: a client's new attempt). */
void zl__conn_set_peer(zl_conn_t *c, const struct sockaddr *sa,
                       socklen_t len);
/* The peer formatted for a message, into buf (ZL_ADDR_STRLEN). */
char *zl__conn_peer_text(const zl_conn_t *c, char *buf);
void zl__conn_carry(zl_conn_t *c, bool sent, uint32_t hi);

/* Count n bytes moved: the low word inline, a carry into the box. */
static inline void zl__conn_count(zl_conn_t *c, bool sent, size_t n)
{
    uint32_t *lo = sent ? &c->sent_lo : &c->received_lo;
    uint64_t t = (uint64_t)*lo + n;

    *lo = (uint32_t)t;
    if (G_UNLIKELY(t >> 32))
        zl__conn_carry(c, sent, (uint32_t)(t >> 32));
}

static inline const zl__conn_cfg_t *zl__cfg(const zl_conn_t *c)
{
    return (const zl__conn_cfg_t *)c->owner;
}

static inline size_t zl__queued(const zl_conn_t *c)
{
    return c->sq ? c->sq->queued : 0;
}

/* The low 32 bits of zl_now_ms(): progress_ms and active_ms. */
static inline uint32_t zl__now32(void)
{
    return (uint32_t)zl_now_ms();
}

/* An idle connection should stay this small (LP64): 88 bytes are a 96-byte
 * malloc chunk.  The ops table lives in the owner's configuration, the
 * addresses in the box (on demand), not in each connection. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct zl_conn) <= 88,
               "struct zl_conn grew");

/* conn.c */
void zl__conn_io(zl_poller_t *p, int fd, unsigned events, void *udata);
/* owner: a client or a server whose first member is its zl__conn_cfg_t,
 * with cfg.ops set. */
zl_conn_t *zl__conn_new(zl_poller_t *p, void *owner);
/* Adopt a connected fd: set options, register for reading. */
int zl__conn_attach(zl_conn_t *c, int fd);
/* Set the usual socket options on a fresh TCP fd. */
void zl__sock_setup(int fd, const zl__conn_cfg_t *cfg);
/* Close the fd now (no callbacks). abortive: RST. */
void zl__conn_drop_fd(zl_conn_t *c, bool abortive);
/* Final stage: post on_closed and release. */
void zl__conn_finish(zl_conn_t *c);
/* Make the poller watch what the connection needs now.  Owner thread. */
int zl__conn_update_interest(zl_conn_t *c);
/* A hint appended to a system error's message (ETIMEDOUT). */
const char *zl__conn_sys_hint(int e);
void zl__group_add(zl__group_t *g, zl_conn_t *c);
void zl__group_remove(zl__group_t *g, zl_conn_t *c);
int zl__group_start(zl__group_t *g); /* arm the manager timer (any thread) */
void zl__group_stop(zl__group_t *g); /* poller thread */
/* Build a zl_error_t (code 0: success) and call h->on_connect. */
void zl__conn_emit_connect(zl_conn_t *c, int code, int sys, zl_stage_t stage,
                           const char *msg);

/* conn-send.c: the send queue and the write path.  Owner thread. */
/* Send, or queue what the kernel does not take.  Takes over buf's
 * reference if buf is not NULL (then data and len are ignored). */
int zl__conn_send_local(zl_conn_t *c, const uint8_t *data, size_t len,
                        zl_buf_t *buf);
/* Write the queue until the kernel pushes back or it is empty. */
void zl__conn_flush(zl_conn_t *c);
/* shutdown(SHUT_WR) once requested and the queue is empty; with
 * half-close on and the peer's end of stream seen, both directions are
 * then done and the connection finishes (on_closed, no on_err). */
void zl__conn_shutdown_wr(zl_conn_t *c);
/* Drop the queue, return bytes dropped. */
size_t zl__conn_clear_queue(zl_conn_t *c);

/* ------------------------------------------------------------------
 * For core/plugin: the layer above reaches connections only through
 * these, never through struct zl_conn or zl__conn_cfg_t.  Owner thread
 * (the connection's poller), while the connection has its owner (until
 * its on_closed has returned), unless said otherwise.
 * ------------------------------------------------------------------ */

/* The connection's serial number, the N of zl_conn_name()'s "kind#N":
 * unique in the process, never 0.  Any thread, at any time. */
uint32_t zl__conn_serial(const zl_conn_t *c);
/* The connection's send watermarks (zl_conn_options_t high_water and
 * low_water as resolved): busy above *high, ready again at or below
 * *low.  After on_closed both are SIZE_MAX. */
void zl__conn_marks(const zl_conn_t *c, size_t *high, size_t *low);
/* Report an error once (on_err) and close: gracefully for ZL_EOF, else
 * abortively.  A client's connection may reconnect instead. */
void zl__conn_fail(zl_conn_t *c, int code, int sys, zl_stage_t stage,
                   const char *fmt, ...) G_GNUC_PRINTF(5, 6);
/* client.c, for a client behind a transport layer (c must be a
 * connection made by zl_client_connect()): a TCP connect no longer ends a
 * run of failures (max_attempts); the layer's handshake does, by calling
 * zl__client_reset_failures().  No effect after on_closed. */
void zl__client_defer_reset(zl_conn_t *c);
void zl__client_reset_failures(zl_conn_t *c);

#endif
