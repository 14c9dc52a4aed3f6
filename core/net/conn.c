/* zltk — TCP connection: read path, lifecycle, manager groups, the public
 * API.  The send queue and write path are in conn-send.c. */
#define G_LOG_DOMAIN "zltk-conn"
#include "net-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#define ZL__RBUF_SIZE (128 * 1024)
#define ZL__READS_PER_EVENT 1

static atomic_uint conn_serial;

/* ------------------------------------------------------------ config */

void zl__conn_cfg_init(zl__conn_cfg_t *cfg, const zl_conn_options_t *o,
                       const zl_conn_handler_t *h, void *data,
                       const char *kind)
{
    zl_conn_options_t d = ZL_CONN_OPTIONS_INIT;

    /* The values are literal and checked (zl__conn_options_check). */
    if (!o)
        o = &d;
    memset(cfg, 0, sizeof(*cfg));
    cfg->h = *h;
    cfg->high_water = o->high_water;
    cfg->low_water = o->low_water;
    cfg->send_timeout_ms = o->send_timeout_ms;
    cfg->manager_ms = o->manager_ms;
    cfg->sndbuf = o->sndbuf;
    cfg->rcvbuf = o->rcvbuf;
    cfg->keepalive_ms = o->keepalive_ms;
    cfg->idle_timeout_ms =
        o->idle_timeout_ms > INT32_MAX ? INT32_MAX : o->idle_timeout_ms;
    cfg->data = data;
    cfg->kind = kind;
}

void zl__sock_setup(int fd, const zl__conn_cfg_t *cfg)
{
    int one = 1;
    struct linger lg = {0, 0};

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (cfg->sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sndbuf, sizeof(int));
    if (cfg->rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof(int));
    if (cfg->keepalive_ms) {
        /* Whole seconds (the kernel's unit), at most its 32767. */
        uint32_t s = cfg->keepalive_ms / 1000 + (cfg->keepalive_ms % 1000 != 0);
        int idle = s > 32767 ? 32767 : (int)s;
        int intvl = idle / 3 > 10 ? 10 : idle / 3 ? idle / 3 : 1, cnt = 9;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#else
        (void)idle, (void)intvl, (void)cnt;
#endif
    }
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
}

/* ------------------------------------------------------------ recv buffer */

/* One receive buffer per poller thread, shared by all its connections.  A
 * handler that keeps it (zl_buf_ref) makes the next read take a fresh one. */
static pthread_key_t rbuf_key;
static pthread_once_t rbuf_once = PTHREAD_ONCE_INIT;

static void rbuf_free(void *b)
{
    zl_buf_unref(b);
}

static void rbuf_key_init(void)
{
    pthread_key_create(&rbuf_key, rbuf_free);
}

static zl_buf_t *rbuf_get(void)
{
    zl_buf_t *b;

    pthread_once(&rbuf_once, rbuf_key_init);
    b = pthread_getspecific(rbuf_key);
    if (b && zl_buf_refcount(b) == 1)
        return b;
    if (b) {
        zl_buf_unref(b); /* a handler kept it: leave it to them */
        pthread_setspecific(rbuf_key, NULL);
    }
    b = zl_buf_new(ZL__RBUF_SIZE);
    if (b)
        pthread_setspecific(rbuf_key, b);
    return b;
}

/* ------------------------------------------------------------ addresses */

/* What zl_conn_peer() and zl_conn_local() give without an address. */
static const zl_addr_t no_addr;

/* The box if there is one (not the packed IPv4 form). */
static zl__conn_box_t *box_if(const zl_conn_t *c)
{
    return c->peer && !(c->peer & 1)
               ? (zl__conn_box_t *)(uintptr_t)c->peer
               : NULL;
}

static bool peer_known(const zl_conn_t *c)
{
    const zl__conn_box_t *b = box_if(c);

    return b ? b->peer.len != 0 : c->peer != 0;
}

/* The packed IPv4 form into a sockaddr_in. */
static void unpack_v4(uint64_t v, struct sockaddr_in *in)
{
    memset(in, 0, sizeof(*in));
    in->sin_family = AF_INET;
    in->sin_port = (in_port_t)(v >> 16);
    in->sin_addr.s_addr = (in_addr_t)(v >> 32);
}

zl__conn_box_t *zl__conn_box(zl_conn_t *c)
{
    zl__conn_box_t *b = box_if(c);
    struct sockaddr_in in;

    if (b)
        return b;
    if (!(b = calloc(1, sizeof(*b))))
        return NULL;
    if (c->peer & 1) {
        unpack_v4(c->peer, &in);
        zl_addr_from_sockaddr(&b->peer, (struct sockaddr *)&in, sizeof(in));
    }
    c->peer = (uint64_t)(uintptr_t)b;
    return b;
}

void zl__conn_set_peer(zl_conn_t *c, const struct sockaddr *sa,
                       socklen_t len)
{
    zl__conn_box_t *b = box_if(c);

    if (!b && sa && sa->sa_family == AF_INET &&
        len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        c->peer = (uint64_t)in->sin_addr.s_addr << 32 |
                  (uint64_t)in->sin_port << 16 | 1;
        return;
    }
    if (!b && !sa) {
        c->peer = 0;
        return;
    }
    if (!b && !(b = zl__conn_box(c)))
        return; /* out of memory: the peer stays unknown */
    memset(&b->peer, 0, sizeof(b->peer));
    memset(&b->local, 0, sizeof(b->local));
    b->local_known = false;
    if (sa)
        zl_addr_from_sockaddr(&b->peer, sa, len);
}

char *zl__conn_peer_text(const zl_conn_t *c, char *buf)
{
    const zl__conn_box_t *b = box_if(c);
    zl_addr_t a;
    struct sockaddr_in in;

    if (b)
        return zl_addr_format(&b->peer, buf, ZL_ADDR_STRLEN);
    memset(&a, 0, sizeof(a));
    if (c->peer & 1) {
        unpack_v4(c->peer, &in);
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof(in));
    }
    return zl_addr_format(&a, buf, ZL_ADDR_STRLEN);
}

void zl__conn_carry(zl_conn_t *c, bool sent, uint32_t hi)
{
    zl__conn_box_t *b = zl__conn_box(c);

    if (!b)
        return; /* out of memory: the count loses its high word */
    if (sent)
        b->sent_hi += hi;
    else
        b->received_hi += hi;
}

/* The local address, asked of the kernel once per fd, once connected (a
 * client's attempt still connecting has no peer yet, and no local address
 * either, as before). */
static void fill_local(const zl_conn_t *c, zl__conn_box_t *b)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (b->local_known || c->fd < 0 || !b->peer.len)
        return;
    b->local_known = true;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0)
        zl_addr_from_sockaddr(&b->local, (struct sockaddr *)&ss, len);
}

/* Before the fd closes: box what is known, so that both addresses stay
 * readable (from any thread once on_closed has run). */
static void keep_addresses(zl_conn_t *c)
{
    zl__conn_box_t *b;

    if (!c->peer)
        return;
    if (!(b = zl__conn_box(c))) {
        c->peer = 0; /* out of memory: no address rather than a torn one */
        return;
    }
    fill_local(c, b);
}

/* ------------------------------------------------------------ basics */

zl_conn_t *zl__conn_new(zl_poller_t *p, void *owner)
{
    zl_conn_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    atomic_init(&c->refs, 1); /* the "alive" reference, dropped after on_closed */
    c->fd = -1;
    c->poller = p;
    c->owner = owner;
    c->data = ((const zl__conn_cfg_t *)owner)->data;
    c->gone_ops = ((const zl__conn_cfg_t *)owner)->ops; /* in no group yet */
    c->serial = atomic_fetch_add_explicit(&conn_serial, 1,
                                          memory_order_relaxed) + 1;
    return c;
}

zl_conn_t *zl_conn_ref(zl_conn_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void zl_conn_unref(zl_conn_t *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    zl__conn_clear_queue(c);
    free(box_if(c));
    free(c);
}

static bool on_owner(const zl_conn_t *c)
{
    return zl_poller_is_current(c->poller);
}

/* Make the poller watch exactly what the connection needs now: reading
 * while open and not paused and before end of stream, writing while bytes
 * are queued.  With nothing to watch the fd leaves the poller altogether:
 * a level-triggered backend would otherwise report a pending read, or a
 * hang-up, on every loop and spin.  Owner thread. */
int zl__conn_update_interest(zl_conn_t *c)
{
    unsigned want = 0, have = 0;
    int rc = 0;

    if (c->fd < 0 || (c->state != ZL__CS_OPEN && c->state != ZL__CS_CLOSING))
        return 0;
    if (c->state == ZL__CS_OPEN &&
        !(c->flags & (ZL__CF_PAUSED | ZL__CF_READ_EOF)))
        want |= ZL_EV_READ;
    if (zl__queued(c))
        want |= ZL_EV_WRITE;
    if (c->flags & ZL__CF_WANT_R)
        have |= ZL_EV_READ;
    if (c->flags & ZL__CF_WANT_W)
        have |= ZL_EV_WRITE;

    if (!(c->flags & ZL__CF_REGISTERED)) {
        if (want)
            rc = zl_poller_add_fd(c->poller, c->fd, want, zl__conn_io, c);
        if (want && rc == 0)
            c->flags |= ZL__CF_REGISTERED;
    } else if (!want) {
        rc = zl_poller_del_fd(c->poller, c->fd, NULL, NULL);
        c->flags &= (uint16_t)~ZL__CF_REGISTERED;
    } else if (want != have) {
        rc = zl_poller_mod_fd(c->poller, c->fd, want);
    } else {
        return 0;
    }
    if (rc == 0 || !want) {
        c->flags &= (uint16_t)~(ZL__CF_WANT_R | ZL__CF_WANT_W);
        if (want & ZL_EV_READ)
            c->flags |= ZL__CF_WANT_R;
        if (want & ZL_EV_WRITE)
            c->flags |= ZL__CF_WANT_W;
    }
    return rc;
}

/* The send timeout also bounds bytes the kernel already took but the peer
 * never acknowledged (a blackholed peer): past it the kernel gives up and
 * the socket fails with ETIMEDOUT.  Set once connected, so that a short
 * send timeout does not cut the SYN retries of a connect out
 * (connect_timeout_ms bounds those). */
static void set_user_timeout(int fd, const zl__conn_cfg_t *cfg)
{
#ifdef TCP_USER_TIMEOUT
    unsigned int ms = (unsigned int)cfg->send_timeout_ms;

    if (ms)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
#else
    (void)fd, (void)cfg;
#endif
}

int zl__conn_attach(zl_conn_t *c, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    c->fd = fd;
    /* A server already set the peer from accept(); the local address is
     * asked for when needed (zl_conn_local(), or closing the fd). */
    if (!peer_known(c) &&
        getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        zl__conn_set_peer(c, (struct sockaddr *)&ss, len);
    c->state = ZL__CS_OPEN;
    c->progress_ms = c->active_ms = zl__now32();
    set_user_timeout(fd, zl__cfg(c));
    /* An fd that connected out is still registered for writability from
     * the connect: update_interest() turns that into reading (and writing
     * what was sent while connecting). */
    c->flags &= (uint16_t)~ZL__CF_WANT_R;
    if (c->flags & ZL__CF_REGISTERED)
        c->flags |= ZL__CF_WANT_W;
    return zl__conn_update_interest(c);
}

void zl__conn_drop_fd(zl_conn_t *c, bool abortive)
{
    if (c->fd < 0)
        return;
    if (c->flags & ZL__CF_REGISTERED)
        zl_poller_del_fd(c->poller, c->fd, NULL, NULL);
    keep_addresses(c); /* they outlive the fd */
    if (abortive) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
    c->flags &= (uint16_t)~(ZL__CF_REGISTERED | ZL__CF_WANT_W | ZL__CF_WANT_R);
}

/* ------------------------------------------------------------ closing */

static void deliver_closed(void *arg)
{
    zl_conn_t *c = arg;
    const zl__conn_owner_ops_t *ops = zl__cfg(c)->ops;

    if (c->flags & ZL__CF_GROUPED)
        zl__group_remove(ops->group(c), c);
    if (zl__cfg(c)->h.on_closed)
        zl__cfg(c)->h.on_closed(c);
    if (c->owner && ops->on_closed)
        ops->on_closed(c); /* the owner lets go: it may be freed */
    c->owner = NULL;
    zl_conn_unref(c); /* the alive reference */
}

void zl__conn_finish(zl_conn_t *c)
{
    size_t dropped;

    if (c->state == ZL__CS_CLOSED)
        return;
    c->state = ZL__CS_CLOSED;
    atomic_store_explicit(&c->ending, true, memory_order_release);
    zl__conn_drop_fd(c, false);
    dropped = zl__conn_clear_queue(c);
    if (dropped)
        g_message("%s: closed with %zu bytes unsent", zl_conn_name(c), dropped);
    /* Posted, so that closing from inside a callback never re-enters the
     * handler: on_closed is always the last thing it sees. */
    if (zl_poller_post(c->poller, 0, deliver_closed, c, NULL) < 0)
        deliver_closed(c); /* poller stopping: still say goodbye */
}

static void abort_local(zl_conn_t *c, const char *why)
{
    size_t dropped;

    if (c->state == ZL__CS_CLOSED)
        return;
    dropped = zl__conn_clear_queue(c);
    if (dropped)
        g_message("%s: %s: dropped %zu queued bytes", zl_conn_name(c), why, dropped);
    zl__conn_drop_fd(c, true);
    zl__conn_finish(c);
}

static void close_local(zl_conn_t *c)
{
    if (c->state >= ZL__CS_CLOSING)
        return;
    if (c->state != ZL__CS_OPEN || !zl__queued(c) || c->fd < 0) {
        zl__conn_finish(c);
        return;
    }
    c->state = ZL__CS_CLOSING;
    c->progress_ms = zl__now32(); /* the send timeout bounds the flush */
    zl__conn_update_interest(c);
}

/* graceful: after on_err, still send what is queued, then close (end of
 * stream, idle timeout); otherwise reset. */
static void fail_msg(zl_conn_t *c, bool graceful, int code, int sys,
                     zl_stage_t stage, const char *msg)
{
    zl_error_t err;

    if (c->state == ZL__CS_CLOSED || (c->flags & ZL__CF_ERRED))
        return;
    c->flags |= ZL__CF_ERRED;
    err = (zl_error_t){zl_err_kind(code), sys, stage, msg};

    if (!(c->flags & ZL__CF_USER_CLOSE) && zl__cfg(c)->h.on_err) {
        zl__cfg(c)->h.on_err(c, &err);
    } else if (c->flags & ZL__CF_USER_CLOSE) {
        g_debug("%s: %s (after close)", zl_conn_name(c), msg);
    }
    if (c->state == ZL__CS_CLOSED)
        return; /* the handler aborted it */
    if (zl__cfg(c)->ops->on_lost && !(c->flags & ZL__CF_USER_CLOSE) &&
        zl__cfg(c)->ops->on_lost(c))
        return; /* the owner took it over (reconnecting) */
    atomic_store_explicit(&c->ending, true, memory_order_release);
    if (graceful)
        close_local(c); /* still send what is queued: echo, then close */
    else
        abort_local(c, msg);
}

void zl__conn_fail(zl_conn_t *c, int code, int sys, zl_stage_t stage,
                   const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (c->state == ZL__CS_CLOSED || (c->flags & ZL__CF_ERRED))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail_msg(c, code == ZL_EOF, code, sys, stage, msg);
}

/* The kernel's ETIMEDOUT on an open connection: TCP_USER_TIMEOUT or the
 * keepalive probes gave up on the peer. */
const char *zl__conn_sys_hint(int e)
{
    return e == ETIMEDOUT ? " (the peer stopped acknowledging: send timeout "
                            "or keepalive)"
                          : "";
}

void zl__conn_emit_connect(zl_conn_t *c, int code, int sys, zl_stage_t stage,
                           const char *msg)
{
    zl_error_t err = {zl_err_kind(code), sys, stage, msg};

    if (!zl__cfg(c)->h.on_connect)
        return;
    zl__cfg(c)->h.on_connect(c, code ? &err : NULL);
}

/* ------------------------------------------------------------ read */

static void continue_read(void *arg);
static void post_read_more(zl_conn_t *c);

/* The peer's end of stream.  By default an error like the others: on_err
 * (ZL_EOF), then a graceful close.  With half-close on (zl_conn_set_half_
 * close) while our sending side is still open, on_err(ZL_EOF) is only
 * news: the connection stays open for sending, and ends when the handler
 * shuts its side down (zl__conn_shutdown_wr), closes, or an error or
 * timeout comes, which is then reported as usual (ERRED is not set). */
static void peer_eof(zl_conn_t *c)
{
    char peer[ZL_ADDR_STRLEN];
    zl_error_t err;

    c->flags |= ZL__CF_READ_EOF;
    zl__conn_update_interest(c);
    zl__conn_peer_text(c, peer);
    if (!(c->flags & ZL__CF_HALF) ||
        (c->flags & (ZL__CF_SHUT_WR | ZL__CF_USER_CLOSE | ZL__CF_ERRED))) {
        zl__conn_fail(c, ZL_EOF, 0, ZL_STAGE_READ, "%s closed the connection",
                      peer);
        return;
    }
    {
        char msg[ZL_ADDR_STRLEN + 64];

        snprintf(msg, sizeof(msg), "%s ended its stream (half-close: "
                 "still open for sending)", peer);
        err = (zl_error_t){zl_err_kind(ZL_EOF), 0, ZL_STAGE_READ, msg};
        if (zl__cfg(c)->h.on_err)
            zl__cfg(c)->h.on_err(c, &err);
    }
}

/* drain: read until EAGAIN or end of stream even after a short read —
 * needed when the peer's FIN may have come in the same edge as the data
 * (ZL_EV_HUP), and when resuming (the edge was consumed while paused). */
static void do_read(zl_conn_t *c, bool drain)
{
    for (int i = 0; i < ZL__READS_PER_EVENT; i++) {
        zl_buf_t *b;
        ssize_t n;

        if (c->state != ZL__CS_OPEN || (c->flags & ZL__CF_PAUSED) ||
            (c->flags & ZL__CF_READ_EOF))
            return;
        b = rbuf_get();
        if (!b) {
            zl__conn_fail(c, -ENOMEM, ENOMEM, ZL_STAGE_READ,
                          "out of memory for the receive buffer");
            return;
        }
        n = recv(c->fd, b->data, b->cap, 0);
        if (n > 0) {
            b->len = (size_t)n;
            zl__conn_count(c, false, (size_t)n);
            c->flags |= ZL__CF_ACTIVE;
            zl__cfg(c)->h.on_recv(c, b);
            /* A short read means the kernel had no more: a new arrival
             * raises a new edge, so no extra recv() to see EAGAIN. */
            if ((size_t)n < b->cap && !drain)
                return;
            continue;
        }
        if (n == 0) {
            peer_eof(c);
            return;
        }
        if (errno == EINTR) {
            i--;
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        {
            int e = errno;
            zl__conn_fail(c, -e, e, ZL_STAGE_READ, "read from %s: %s%s",
                          zl__conn_peer_text(c, (char[ZL_ADDR_STRLEN]){0}),
                          zl_strerror(-(e)), zl__conn_sys_hint(e));
        }
        return;
    }
    /* Fairness: other connections get their turn; this one resumes from a
     * task (an edge-triggered fd would not report the rest again). */
    post_read_more(c);
}

/* Continue reading from a task on the next loop round.  At most one such
 * task per connection: while it is pending, readiness events leave the
 * reading to it, so one busy connection reads one buffer per round like
 * every other. */
static void post_read_more(zl_conn_t *c)
{
    if (c->flags & ZL__CF_READ_MORE)
        return;
    zl_conn_ref(c);
    if (zl_poller_post(c->poller, 0, continue_read, c, NULL) < 0) {
        zl_conn_unref(c);
        return;
    }
    c->flags |= ZL__CF_READ_MORE;
}

static void continue_read(void *arg)
{
    zl_conn_t *c = arg;
    c->flags &= (uint16_t)~ZL__CF_READ_MORE;
    do_read(c, true);
    zl_conn_unref(c);
}

void zl__conn_io(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    zl_conn_t *c = udata;

    (void)p;
    (void)fd;
    if (c->state == ZL__CS_CONNECTING)
        return; /* the owner watches connects with a callback of its own */
    if ((events & (ZL_EV_READ | ZL_EV_HUP | ZL_EV_ERROR)) &&
        !(c->flags & ZL__CF_READ_MORE))
        do_read(c, events & (ZL_EV_HUP | ZL_EV_ERROR));
    if (c->state == ZL__CS_CLOSED || c->fd < 0)
        return;
    if (events & ZL_EV_ERROR && (c->flags & ZL__CF_PAUSED)) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            zl__conn_fail(c, -err, err, ZL_STAGE_READ, "%s: %s%s",
                          zl_conn_name(c), zl_strerror(-(err)), zl__conn_sys_hint(err));
            return;
        }
    }
    if ((events & (ZL_EV_WRITE | ZL_EV_ERROR)) && zl__queued(c))
        zl__conn_flush(c);
    else if ((c->flags & ZL__CF_READ_EOF) && c->state == ZL__CS_CLOSING &&
             !zl__queued(c))
        zl__conn_finish(c);
}

/* ------------------------------------------------------------ groups */

/* The I/O path only flags activity; the tick turns the flag into a time.
 * So a busy connection reads no clock per message and an idle one needs
 * no timer of its own; the price is a close up to two ticks late. */
static void check_idle(zl_conn_t *c, uint32_t now, uint32_t limit)
{
    char msg[128];
    uint32_t quiet;

    if (c->flags & ZL__CF_ACTIVE) {
        c->flags &= (uint16_t)~ZL__CF_ACTIVE;
        c->active_ms = now;
        return;
    }
    quiet = now - c->active_ms;
    if (quiet < limit)
        return;
    snprintf(msg, sizeof(msg), "idle for %" PRIu32 " ms: no byte in either "
             "direction (idle timeout %" PRIu32 " ms)", quiet, limit);
    fail_msg(c, true, ZL_ETIMEOUT, 0, ZL_STAGE_READ, msg);
}

static bool group_tick(void *arg)
{
    zl__group_t *g = arg;
    uint64_t now = zl_now_ms();
    const zl__conn_cfg_t *cfg = g->cfg;

    for (zl_conn_t *c = g->head, *next; c; c = next) {
        next = c->next;
        if (c->state == ZL__CS_CLOSED)
            continue;
        zl_conn_ref(c);
        if (zl__queued(c) && cfg->send_timeout_ms &&
            (uint32_t)((uint32_t)now - c->progress_ms) >= cfg->send_timeout_ms &&
            (c->state == ZL__CS_OPEN || c->state == ZL__CS_CLOSING)) {
            char msg[128];
            snprintf(msg, sizeof(msg),
                     "send timed out: %zu bytes queued, no progress for %llu ms",
                     zl__queued(c),
                     (unsigned long long)(uint32_t)((uint32_t)now - c->progress_ms));
            if (c->state == ZL__CS_CLOSING)
                abort_local(c, msg);
            else
                zl__conn_fail(c, ZL_ETIMEOUT, 0, ZL_STAGE_WRITE, "%s", msg);
        }
        if (cfg->idle_timeout_ms && c->state == ZL__CS_OPEN)
            check_idle(c, (uint32_t)now, cfg->idle_timeout_ms);
        if ((c->state == ZL__CS_OPEN || c->state == ZL__CS_CONNECTING) &&
            cfg->h.on_manager) {
            cfg->h.on_manager(c);
        }
        next = c->next;
        zl_conn_unref(c);
    }
    return true;
}

void zl__group_add(zl__group_t *g, zl_conn_t *c)
{
    c->flags |= ZL__CF_GROUPED;
    c->prev = NULL;
    c->next = g->head;
    if (g->head)
        g->head->prev = c;
    g->head = c;
    g->count++;
}

void zl__group_remove(zl__group_t *g, zl_conn_t *c)
{
    if (!(c->flags & ZL__CF_GROUPED))
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = NULL;
    c->gone_ops = zl__cfg(c)->ops; /* for zl_conn_name() once ownerless */
    c->flags &= (uint16_t)~ZL__CF_GROUPED;
    g->count--;
}

int zl__group_start(zl__group_t *g)
{
    return zl_poller_add_repeat(g->poller, g->cfg->manager_ms, group_tick, g,
                                NULL, &g->timer);
}

void zl__group_stop(zl__group_t *g)
{
    if (g->timer)
        zl_timer_cancel(g->timer);
    g->timer = NULL;
}

/* ------------------------------------------------------------ public */

typedef enum { OP_SEND, OP_CLOSE, OP_ABORT, OP_SHUTDOWN, OP_PAUSE, OP_RESUME } op_kind_t;

typedef struct conn_op {
    zl_conn_t *c;
    op_kind_t kind;
    zl_buf_t *buf;
} conn_op_t;

static void op_local(zl_conn_t *c, op_kind_t kind)
{
    switch (kind) {
    case OP_CLOSE:
        if (c->state == ZL__CS_CLOSED)
            break;
        c->flags |= ZL__CF_USER_CLOSE;
        atomic_store_explicit(&c->ending, true, memory_order_release);
        if (zl__cfg(c)->ops->close_unopened_now && c->state != ZL__CS_OPEN) {
            zl__conn_finish(c); /* connecting or waiting: nothing to flush */
            break;
        }
        close_local(c);
        break;
    case OP_ABORT:
        c->flags |= ZL__CF_USER_CLOSE;
        atomic_store_explicit(&c->ending, true, memory_order_release);
        abort_local(c, "aborted");
        break;
    case OP_SHUTDOWN:
        if (c->state > ZL__CS_CLOSING)
            break;
        c->flags |= ZL__CF_SHUT_WR;
        zl__conn_shutdown_wr(c);
        break;
    case OP_PAUSE:
        c->flags |= ZL__CF_PAUSED;
        zl__conn_update_interest(c);
        break;
    case OP_RESUME:
        if (!(c->flags & ZL__CF_PAUSED))
            break;
        c->flags &= (uint16_t)~ZL__CF_PAUSED;
        zl__conn_update_interest(c);
        /* Under edge triggering the kernel will not repeat what it already
         * reported: drain now. */
        post_read_more(c);
        break;
    case OP_SEND:
        break;
    }
}

static void op_run(void *arg)
{
    conn_op_t *op = arg;

    if (op->kind == OP_SEND)
        zl__conn_send_local(op->c, NULL, 0, op->buf);
    else
        op_local(op->c, op->kind);
    zl_conn_unref(op->c);
    free(op);
}

static int op_post(zl_conn_t *c, op_kind_t kind, zl_buf_t *buf)
{
    conn_op_t *op = malloc(sizeof(*op));
    int rc;

    if (!op) {
        zl_buf_unref(buf);
        return -ENOMEM;
    }
    *op = (conn_op_t){zl_conn_ref(c), kind, buf};
    rc = zl_poller_post(c->poller, 0, op_run, op, NULL);
    if (rc < 0) {
        zl_conn_unref(c);
        zl_buf_unref(buf);
        free(op);
    }
    return rc;
}

int zl_conn_send(zl_conn_t *c, const void *data, size_t len)
{
    zl_buf_t *b;

    if (!c || (!data && len))
        return -EINVAL;
    if (on_owner(c))
        return zl__conn_send_local(c, data, len, NULL);
    /* A hint (the owner may be closing right now); the task re-checks. */
    if (atomic_load_explicit(&c->ending, memory_order_acquire))
        return ZL_ESHUTDOWN;
    b = zl_buf_new_copy(data, len);
    if (!b)
        return -ENOMEM;
    return op_post(c, OP_SEND, b);
}

int zl_conn_send_buf(zl_conn_t *c, zl_buf_t *buf)
{
    if (!c || !buf)
        return -EINVAL;
    if (on_owner(c))
        return zl__conn_send_local(c, NULL, 0, buf);
    if (atomic_load_explicit(&c->ending, memory_order_acquire)) {
        zl_buf_unref(buf);
        return ZL_ESHUTDOWN;
    }
    return op_post(c, OP_SEND, buf);
}

static void op_any(zl_conn_t *c, op_kind_t kind)
{
    if (!c)
        return;
    if (on_owner(c))
        op_local(c, kind);
    else
        op_post(c, kind, NULL);
}

void zl_conn_close(zl_conn_t *c) { op_any(c, OP_CLOSE); }
void zl_conn_abort(zl_conn_t *c) { op_any(c, OP_ABORT); }
void zl_conn_shutdown(zl_conn_t *c) { op_any(c, OP_SHUTDOWN); }
void zl_conn_pause(zl_conn_t *c) { op_any(c, OP_PAUSE); }
void zl_conn_resume(zl_conn_t *c) { op_any(c, OP_RESUME); }

void zl_conn_set_half_close(zl_conn_t *c, bool on)
{
    if (on)
        c->flags |= ZL__CF_HALF;
    else
        c->flags &= (uint16_t)~ZL__CF_HALF;
}

bool zl_conn_half_close(const zl_conn_t *c)
{
    return c->flags & ZL__CF_HALF;
}

void zl_conn_set_data(zl_conn_t *c, void *data) { c->data = data; }
void *zl_conn_get_data(const zl_conn_t *c) { return c->data; }
zl_poller_t *zl_conn_poller(const zl_conn_t *c) { return c->poller; }
const zl_addr_t *zl_conn_peer(const zl_conn_t *c)
{
    zl__conn_box_t *b = c->peer ? zl__conn_box((zl_conn_t *)c) : NULL;

    return b ? &b->peer : &no_addr;
}
const zl_addr_t *zl_conn_local(const zl_conn_t *c)
{
    zl__conn_box_t *b = c->peer ? zl__conn_box((zl_conn_t *)c) : NULL;

    if (!b)
        return &no_addr;
    fill_local(c, b);
    return &b->local;
}
const char *zl_conn_name(const zl_conn_t *c)
{
    static _Thread_local char buf[32];
    /* Grouped: the owner is there; else prev's slot holds its ops. */
    const zl__conn_owner_ops_t *ops =
        (c->flags & ZL__CF_GROUPED) ? zl__cfg(c)->ops : c->gone_ops;

    snprintf(buf, sizeof(buf), "%s#%u", ops->kind, c->serial);
    return buf;
}
size_t zl_conn_queued(const zl_conn_t *c) { return zl__queued(c); }
uint64_t zl_conn_bytes_sent(const zl_conn_t *c)
{
    const zl__conn_box_t *b = box_if(c);

    return (uint64_t)(b ? b->sent_hi : 0) << 32 | c->sent_lo;
}
uint64_t zl_conn_bytes_received(const zl_conn_t *c)
{
    const zl__conn_box_t *b = box_if(c);

    return (uint64_t)(b ? b->received_hi : 0) << 32 | c->received_lo;
}
bool zl_conn_is_busy(const zl_conn_t *c) { return c->flags & ZL__CF_BUSY; }
int zl_conn_fd(const zl_conn_t *c) { return c->fd; }

bool zl_conn_is_closing(const zl_conn_t *c)
{
    return atomic_load_explicit(&c->ending, memory_order_acquire);
}

/* ------------------------------------------------------------ core/plugin */

uint32_t zl__conn_serial(const zl_conn_t *c)
{
    return c->serial;
}

void zl__conn_marks(const zl_conn_t *c, size_t *high, size_t *low)
{
    const zl__conn_cfg_t *cfg = zl__cfg(c);

    *high = cfg ? cfg->high_water : SIZE_MAX;
    *low = cfg ? cfg->low_water : SIZE_MAX;
}
