/* zltk — TCP client: resolve off-loop, try every address within one
 * timeout, reconnect with backoff.  All state changes on the owner poller.
 *
 * Each attempt has an epoch; a resolution or timer that belongs to an older
 * attempt (or to a closed client) finds a different epoch and is dropped.
 *
 * Addresses are tried the Happy Eyeballs way (RFC 8305): families
 * interleaved, the next address started when the current one has not
 * connected within attempt_delay_ms (or at once when it failed), the
 * earlier ones kept in flight; the first to connect wins and the others are
 * closed.  So an address that silently drops packets (a broken IPv6 route)
 * costs attempt_delay_ms, not the whole connect timeout.  Attempt sockets
 * are watched with their own callback (attempt_io); only the winner becomes
 * the connection's fd.
 */
#define G_LOG_DOMAIN "zltk-client"
#include "net-internal.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#define ZL__ATTEMPTS_MAX 8 /* connects in flight at once */

typedef struct zl__client zl__client_t;

/* One connect in flight: a socket of its own, watched by attempt_io. */
typedef struct zl__attempt {
    zl_conn_t *c;
    int fd;     /* -1: slot free */
    size_t idx; /* its address in cl->addrs */
} zl__attempt_t;

struct zl__client {
    zl__conn_cfg_t cfg;
    zl__group_t group;
    char *host;
    uint16_t port;
    bool numeric;
    zl_addr_t local;
    bool has_local;
    uint64_t timeout_ms;
    bool reconnect;
    uint64_t rmin, rmax;
    unsigned max_attempts, failures;
    bool defer_reset; /* a layer's handshake, not TCP, ends a failure run */
    bool owe_unbusy;  /* lost while busy: on_busy(false) at the next connect */
    zl_worker_pool_t *workers;
    zl_addr_t *addrs;
    size_t naddrs, idx; /* idx: the next address to start */
    uint32_t attempt_delay_ms;
    zl__attempt_t att[ZL__ATTEMPTS_MAX];
    unsigned inflight;
    zl_timer_t *stagger; /* starts the next address */
    uint32_t epoch;
    bool resolving;
    zl_timer_t *deadline;
    zl_timer_t *retry;
    zl_work_t *job;
    /* The most telling failure of this attempt, reported if all fail. */
    int err_code, err_sys;
    zl_stage_t err_stage;
    char err_msg[200];
};

/* conn.c reads the configuration through the connection's owner pointer. */
_Static_assert(offsetof(zl__client_t, cfg) == 0, "cfg must come first");
#define CL(c) ((zl__client_t *)(c)->owner)

static _Atomic(zl_resolve_fn) resolver;

void zl_client_set_resolver(zl_resolve_fn fn)
{
    atomic_store(&resolver, fn);
}

/* Jitter source: per-thread xorshift (GLib's global GRand takes a lock
 * that ThreadSanitizer cannot see, and jitter needs no quality). */
static uint32_t jitter_rand(void)
{
    static _Thread_local uint32_t x;

    if (!x)
        x = (uint32_t)zl_now_ns() ^ (uint32_t)(uintptr_t)&x ^ 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

static void begin_attempt(zl_conn_t *c);
static void try_next(zl_conn_t *c);

static const char *peer_text(zl__client_t *cl, char *buf, size_t len)
{
    if (zl_addr_is_unix_text(cl->host))
        snprintf(buf, len, "%s", cl->host);
    else if (strchr(cl->host, ':'))
        snprintf(buf, len, "[%s]:%u", cl->host, cl->port);
    else
        snprintf(buf, len, "%s:%u", cl->host, cl->port);
    return buf;
}

static void record(zl__client_t *cl, int code, int sys, zl_stage_t stage,
                   const char *fmt, ...) G_GNUC_PRINTF(5, 6);
static void record(zl__client_t *cl, int code, int sys, zl_stage_t stage,
                   const char *fmt, ...)
{
    va_list ap;

    /* Keep the first refusal/connect error over later socket errors only
     * if nothing better came: the last address tried usually explains it. */
    cl->err_code = code;
    cl->err_sys = sys;
    cl->err_stage = stage;
    va_start(ap, fmt);
    vsnprintf(cl->err_msg, sizeof(cl->err_msg), fmt, ap);
    va_end(ap);
}

/* Why a unix: connect failed, in words a user can act on. */
static const char *unix_hint(const zl__client_t *cl, int err)
{
    if (!zl_addr_is_unix_text(cl->host))
        return "";
    switch (err) {
    case ENOENT:
        return " (no socket file: is the server running?)";
    case ECONNREFUSED:
        return " (a socket file nobody listens on)";
    case EAGAIN:
        return " (the server's backlog is full)";
    default:
        return "";
    }
}

/* "connect to HOST:PORT: why", naming the address tried for names. */
static void record_connect(zl__client_t *cl, int err, const char *at)
{
    char peer[300];

    peer_text(cl, peer, sizeof(peer));
    if (cl->numeric)
        record(cl, -err, err, ZL_STAGE_CONNECT, "connect to %s: %s%s", peer,
               zl_strerror(-(err)), unix_hint(cl, err));
    else
        record(cl, -err, err, ZL_STAGE_CONNECT, "connect to %s (%s): %s",
               peer, at, zl_strerror(-(err)));
}

static void stop_timers(zl__client_t *cl)
{
    if (cl->deadline)
        zl_timer_cancel(cl->deadline);
    cl->deadline = NULL;
    if (cl->stagger)
        zl_timer_cancel(cl->stagger);
    cl->stagger = NULL;
    if (cl->retry)
        zl_timer_cancel(cl->retry);
    cl->retry = NULL;
    if (cl->job)
        zl_work_cancel(cl->job);
    cl->job = NULL;
    cl->resolving = false;
}

/* Close one attempt's socket. */
static void attempt_close(zl__client_t *cl, zl__attempt_t *a)
{
    if (a->fd < 0)
        return;
    zl_poller_del_fd(a->c->poller, a->fd, NULL, NULL);
    close(a->fd);
    a->fd = -1;
    cl->inflight--;
}

/* Close every socket of the attempt without touching the handler. */
static void drop_attempt_fd(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);

    for (unsigned i = 0; i < ZL__ATTEMPTS_MAX; i++)
        attempt_close(cl, &cl->att[i]);
    if (cl->stagger)
        zl_timer_cancel(cl->stagger);
    cl->stagger = NULL;
    zl__conn_drop_fd(c, false);
}

static uint64_t retry_fire(void *arg);

static void schedule_retry(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);
    unsigned shift = cl->failures > 16 ? 16 : cl->failures;
    uint64_t d = cl->rmin << (shift ? shift - 1 : 0);
    int64_t jitter;

    if (d > cl->rmax || d < cl->rmin)
        d = cl->rmax;
    /* ±25 % so that a fleet of clients does not reconnect in lockstep. */
    jitter = (int64_t)(d / 4);
    if (jitter > 0)
        d = (uint64_t)((int64_t)d - jitter +
                       (int64_t)(jitter_rand() % (uint64_t)(2 * jitter + 1)));
    c->state = ZL__CS_WAIT;
    g_info("%s: reconnecting to %s in %llu ms (attempt %u)", zl_conn_name(c),
           peer_text(cl, (char[300]){0}, 300), (unsigned long long)d,
           cl->failures + 1);
    if (zl_poller_add_timer(c->poller, d, retry_fire, c, NULL, &cl->retry) < 0)
        zl__conn_finish(c);
}

static uint64_t retry_fire(void *arg)
{
    zl_conn_t *c = arg;
    zl__client_t *cl = CL(c);

    zl_timer_release(cl->retry);
    cl->retry = NULL;
    if (c->state == ZL__CS_WAIT)
        begin_attempt(c);
    return 0;
}

/* The attempt failed: tell the handler, then retry or close. */
static void fail_attempt(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);

    stop_timers(cl);
    drop_attempt_fd(c);
    cl->epoch++; /* anything still in flight for this attempt is stale */
    zl__conn_emit_connect(c, cl->err_code, cl->err_sys, cl->err_stage,
                          cl->err_msg);
    if (c->state != ZL__CS_CONNECTING)
        return; /* the handler closed it */
    cl->failures++;
    if (cl->reconnect && (!cl->max_attempts || cl->failures < cl->max_attempts)) {
        schedule_retry(c);
        return;
    }
    zl__conn_finish(c);
}

static void connected(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);
    int fd = c->fd;

    stop_timers(cl);
    if (!cl->defer_reset)
        cl->failures = 0;
    if (zl__conn_attach(c, fd) < 0) {
        record(cl, ZL_EOTHER, 0, ZL_STAGE_CONNECT,
               "cannot watch the connection to %s",
               peer_text(cl, (char[300]){0}, 300));
        fail_attempt(c);
        return;
    }
    /* The handler heard on_busy(true) on the lost connection, whose queue
     * went with it: it may produce again, on this one. */
    if (cl->owe_unbusy) {
        cl->owe_unbusy = false;
        if (cl->cfg.h.on_busy)
            cl->cfg.h.on_busy(c, false);
        if (c->state != ZL__CS_OPEN)
            return; /* closed from on_busy */
    }
    zl__conn_emit_connect(c, 0, 0, ZL_STAGE_NONE, NULL);
}

static const char *addr_text(zl__client_t *cl, size_t idx, char *buf,
                             size_t len)
{
    return zl_addr_format(&cl->addrs[idx], buf, len);
}

/* The first to connect wins: it becomes the connection's fd (watched by
 * zl__conn_io from now on) and every other attempt is closed. */
static void attempt_won(zl_conn_t *c, zl__attempt_t *a)
{
    zl__client_t *cl = CL(c);
    int fd = a->fd;

    zl_poller_del_fd(c->poller, fd, NULL, NULL);
    a->fd = -1;
    cl->inflight--;
    drop_attempt_fd(c);
    c->fd = fd;
    connected(c);
}

static void attempt_io(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    zl__attempt_t *a = udata;
    zl_conn_t *c = a->c;
    zl__client_t *cl = CL(c);
    int err = 0;
    socklen_t len = sizeof(err);
    char at[ZL_ADDR_STRLEN];

    (void)p;
    if (c->state != ZL__CS_CONNECTING) { /* closed meanwhile */
        drop_attempt_fd(c);
        return;
    }
    if (!(events & (ZL_EV_WRITE | ZL_EV_ERROR | ZL_EV_HUP)))
        return;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err) {
        attempt_won(c, a);
        return;
    }
    record_connect(cl, err, addr_text(cl, a->idx, at, sizeof(at)));
    attempt_close(cl, a);
    /* A failure starts the next address at once. */
    if (cl->stagger)
        zl_timer_cancel(cl->stagger);
    cl->stagger = NULL;
    try_next(c);
}

static uint64_t stagger_fire(void *arg)
{
    zl_conn_t *c = arg;
    zl__client_t *cl = CL(c);

    zl_timer_release(cl->stagger);
    cl->stagger = NULL;
    if (c->state == ZL__CS_CONNECTING)
        try_next(c);
    return 0;
}

/* Start the next address (cl->idx on) that gets a connect in progress —
 * or connects at once, or until all have failed; then wait for it, and
 * after attempt_delay_ms start the one after it if there is one. */
static void try_next(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);
    char at[ZL_ADDR_STRLEN];
    zl__attempt_t *slot = NULL;

    for (unsigned i = 0; i < ZL__ATTEMPTS_MAX && !slot; i++)
        if (cl->att[i].fd < 0)
            slot = &cl->att[i];
    for (; slot && cl->idx < cl->naddrs; cl->idx++) {
        const zl_addr_t *a = &cl->addrs[cl->idx];
        struct sockaddr_storage ss;
        socklen_t sslen = zl__addr_sockaddr(a, &ss);
        int fd, rc;

        zl_addr_format(a, at, sizeof(at));
        fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
        if (fd < 0) {
            record(cl, -errno, errno, ZL_STAGE_SOCKET,
                   "socket for %s: %s", at, zl_strerror(-errno));
            continue;
        }
        if (a->u.sa.sa_family == AF_UNIX)
            zl__sock_setup_unix(fd, &cl->cfg);
        else
            zl__sock_setup(fd, &cl->cfg);
        if (cl->has_local) {
            int one = 1;
            char lt[ZL_ADDR_STRLEN];
            /* Reuse of a local port is allowed; SO_REUSEPORT is not set on
             * client sockets (TK#244). */
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (cl->local.u.sa.sa_family != a->u.sa.sa_family ||
                bind(fd, &cl->local.u.sa, cl->local.len) < 0) {
                int e = cl->local.u.sa.sa_family != a->u.sa.sa_family
                            ? EAFNOSUPPORT
                            : errno;
                record(cl, -e, e, ZL_STAGE_BIND, "bind to %s for %s: %s",
                       zl_addr_format(&cl->local, lt, sizeof(lt)), at,
                       zl_strerror(-(e)));
                close(fd);
                continue;
            }
        }
        do
            rc = connect(fd, (struct sockaddr *)&ss, sslen);
        while (rc < 0 && errno == EINTR);
        if (rc < 0 && errno != EINPROGRESS) {
            record_connect(cl, errno, at);
            close(fd);
            continue;
        }
        if (rc == 0) { /* connected at once (loopback may): it wins */
            cl->idx++;
            drop_attempt_fd(c);
            c->fd = fd;
            connected(c);
            return;
        }
        *slot = (zl__attempt_t){c, fd, cl->idx};
        cl->inflight++;
        cl->idx++;
        rc = zl_poller_add_fd(c->poller, fd, ZL_EV_WRITE, attempt_io, slot);
        if (rc < 0) {
            record(cl, rc, -rc, ZL_STAGE_CONNECT, "cannot watch %s: %s", at,
                   zl_strerror(rc));
            close(fd);
            slot->fd = -1;
            cl->inflight--;
            continue;
        }
        if (cl->idx < cl->naddrs &&
            zl_poller_add_timer(c->poller, cl->attempt_delay_ms, stagger_fire,
                                c, NULL, &cl->stagger) < 0)
            cl->stagger = NULL; /* the next starts when this one fails */
        return;
    }
    if (!cl->inflight)
        fail_attempt(c); /* nothing left in flight: all failed */
}

/* RFC 8305 section 4: alternate the address families, starting with the
 * family of the first address, keeping the order within each family. */
static void interleave(zl_addr_t *addrs, size_t n)
{
    zl_addr_t *tmp;
    size_t i = 0, j = 0, k = 0;
    int first;

    if (n < 3)
        return; /* nothing to reorder */
    if (!(tmp = malloc(n * sizeof(*tmp))))
        return; /* keep the resolver's order */
    first = addrs[0].u.sa.sa_family;
    /* i walks the first family, j the others, in their order. */
    while (k < n) {
        while (i < n && addrs[i].u.sa.sa_family != first)
            i++;
        if (i < n)
            tmp[k++] = addrs[i++];
        while (j < n && addrs[j].u.sa.sa_family == first)
            j++;
        if (j < n && k < n)
            tmp[k++] = addrs[j++];
    }
    memcpy(addrs, tmp, n * sizeof(*tmp));
    free(tmp);
}

/* ------------------------------------------------------------ resolve */

typedef struct resolve_job {
    zl_conn_t *c;
    uint32_t epoch;
    char *host;
    uint16_t port;
    zl_addr_t *addrs;
    size_t n;
    int gai, sys;
} resolve_job_t;

static void resolve_work(void *arg)
{
    resolve_job_t *j = arg;
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    zl_resolve_fn fn = atomic_load(&resolver);
    size_t n = 0;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%u", j->port);
    j->gai = fn ? fn(j->host, port, &hints, &res)
                : getaddrinfo(j->host, port, &hints, &res);
    j->sys = errno;
    if (j->gai)
        return;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    j->addrs = calloc(n ? n : 1, sizeof(*j->addrs));
    if (j->addrs) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
            if (zl_addr_from_sockaddr(&j->addrs[j->n], ai->ai_addr,
                                      ai->ai_addrlen) == 0)
                j->n++;
    } else {
        j->gai = EAI_MEMORY;
    }
    freeaddrinfo(res);
}

static void resolve_done(void *arg)
{
    resolve_job_t *j = arg;
    zl_conn_t *c = j->c;
    zl__client_t *cl = CL(c);

    if (c->state != ZL__CS_CONNECTING || j->epoch != cl->epoch)
        return; /* timed out, closed, or a newer attempt: drop it */
    zl_work_release(cl->job);
    cl->job = NULL;
    cl->resolving = false;
    if (j->gai || !j->n) {
        const char *why = !j->gai          ? "no usable address"
                          : j->gai == EAI_SYSTEM ? zl_strerror(-(j->sys))
                                                 : gai_strerror(j->gai);
        record(cl, ZL_EDNS, j->gai == EAI_SYSTEM ? j->sys : 0,
               ZL_STAGE_RESOLVE, "resolve %s: %s", cl->host, why);
        fail_attempt(c);
        return;
    }
    free(cl->addrs);
    cl->addrs = j->addrs;
    cl->naddrs = j->n;
    cl->idx = 0;
    j->addrs = NULL;
    interleave(cl->addrs, cl->naddrs);
    try_next(c);
}

static void resolve_free(void *arg)
{
    resolve_job_t *j = arg;

    zl_conn_unref(j->c);
    free(j->addrs);
    g_free(j->host);
    free(j);
}

/* ------------------------------------------------------------ attempts */

static uint64_t deadline_fire(void *arg)
{
    zl_conn_t *c = arg;
    zl__client_t *cl = CL(c);

    zl_timer_release(cl->deadline);
    cl->deadline = NULL;
    if (c->state != ZL__CS_CONNECTING)
        return 0;
    record(cl, ZL_ETIMEOUT, ETIMEDOUT,
           cl->resolving ? ZL_STAGE_RESOLVE : ZL_STAGE_CONNECT,
           "%s %s timed out after %llu ms",
           cl->resolving ? "resolving" : "connecting to",
           peer_text(cl, (char[300]){0}, 300),
           (unsigned long long)cl->timeout_ms);
    fail_attempt(c);
    return 0;
}

static void begin_attempt(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);
    int rc;

    cl->epoch++;
    c->state = ZL__CS_CONNECTING;
    c->flags &= (uint16_t)~(ZL__CF_ERRED | ZL__CF_READ_EOF | ZL__CF_BUSY |
                            ZL__CF_SHUT_WR | ZL__CF_SHUT_DONE |
                            ZL__CF_FLUSH_NOTE);
    zl__conn_set_peer(c, NULL, 0);
    record(cl, ZL_EOTHER, 0, ZL_STAGE_CONNECT, "connect to %s failed",
           peer_text(cl, (char[300]){0}, 300));
    if (cl->timeout_ms &&
        zl_poller_add_timer(c->poller, cl->timeout_ms, deadline_fire, c, NULL,
                            &cl->deadline) < 0) {
        zl__conn_finish(c);
        return;
    }
    if (cl->numeric) {
        cl->idx = 0;
        try_next(c);
        return;
    }
    resolve_job_t *j = calloc(1, sizeof(*j));
    if (!j || !(j->host = g_strdup(cl->host))) {
        free(j);
        record(cl, -ENOMEM, ENOMEM, ZL_STAGE_RESOLVE, "out of memory");
        fail_attempt(c);
        return;
    }
    j->c = zl_conn_ref(c);
    j->epoch = cl->epoch;
    j->port = cl->port;
    cl->resolving = true;
    rc = zl_worker_submit(cl->workers, c->poller, resolve_work, resolve_done,
                          resolve_free, j, &cl->job);
    if (rc < 0) {
        resolve_free(j);
        cl->resolving = false;
        record(cl, rc, 0, ZL_STAGE_RESOLVE, "resolve %s: %s", cl->host,
               zl_strerror(rc));
        fail_attempt(c);
    }
}

void zl__client_defer_reset(zl_conn_t *c)
{
    if (c->owner)
        CL(c)->defer_reset = true;
}

void zl__client_reset_failures(zl_conn_t *c)
{
    if (c->owner)
        CL(c)->failures = 0;
}

/* ------------------------------------------------------------ owner ops */

/* The connection failed while open: reconnect if asked to. */
static bool client_on_lost(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);
    size_t dropped;

    if (!cl->reconnect)
        return false;
    dropped = zl__conn_clear_queue(c);
    if (dropped)
        g_message("%s: connection lost with %zu bytes unsent", zl_conn_name(c),
                  dropped);
    if (c->flags & ZL__CF_BUSY)
        cl->owe_unbusy = true;
    zl__conn_drop_fd(c, !(c->flags & ZL__CF_READ_EOF));
    cl->failures++;
    if (cl->max_attempts && cl->failures >= cl->max_attempts)
        return false;
    schedule_retry(c);
    return true;
}

static void client_on_closed(zl_conn_t *c)
{
    zl__client_t *cl = CL(c);

    stop_timers(cl);
    for (unsigned i = 0; i < ZL__ATTEMPTS_MAX; i++)
        attempt_close(cl, &cl->att[i]);
    zl__group_stop(&cl->group);
    free(cl->addrs);
    g_free(cl->host);
    free(cl);
    c->owner = NULL;
}

static zl__group_t *client_group(zl_conn_t *c)
{
    return &CL(c)->group;
}

static const zl__conn_owner_ops_t client_ops = {
    .kind = "client",
    /* Closing while connecting or waiting to reconnect, or closing again
     * while a close flushes, ends the connection at once. */
    .close_unopened_now = true,
    .group = client_group,
    .on_lost = client_on_lost,
    .on_closed = client_on_closed,
};

static void client_start(void *arg)
{
    zl_conn_t *c = arg;
    zl__client_t *cl = CL(c);

    zl__group_add(&cl->group, c);
    if (zl__group_start(&cl->group) < 0) {
        zl__conn_finish(c);
        return;
    }
    begin_attempt(c);
}

/* A unix: peer: parsed here, with the message; no local address. */
static int unix_peer(const zl_client_options_t *o, zl_addr_t *out)
{
    const char *who = o->name ? o->name : "zl_client_connect";
    int rc = zl_addr_from_unix(out, o->host);

    if (rc == -ENAMETOOLONG)
        g_warning("%s: address '%s' is too long: a Unix socket path holds "
                  "at most %d bytes, this one has %zu", who, o->host,
                  ZL_ADDR_UNIX_PATH_MAX, strlen(o->host) - 5);
    else if (rc < 0)
        g_warning("%s: address '%s' is not unix:PATH", who, o->host);
    else if (o->local_ip || o->local_port) {
        g_warning("%s: local_ip and local_port do not apply to the Unix "
                  "socket '%s'", who, o->host);
        rc = -EINVAL;
    }
    return rc;
}

int zl_client_connect(zl_conn_t **out, const zl_client_options_t *o,
                      const zl_conn_handler_t *h, void *data)
{
    zl__client_t *cl;
    zl_conn_t *c;
    zl_poller_t *p;
    zl_addr_t tmp;
    int rc;

    if (out)
        *out = NULL;
    if (!o || !h || !h->on_recv || !o->host || !*o->host ||
        (!o->port && !zl_addr_is_unix_text(o->host))) {
        g_warning("zl_client_connect: %s",
                  !h || !h->on_recv ? "the handler needs on_recv"
                                    : "host and a port 1..65535 are required");
        return -EINVAL;
    }
    rc = zl__client_options_check(o);
    if (rc < 0)
        return rc;
    p = o->poller ? o->poller : zl_runtime_get_poller(true);
    if (!p) {
        g_warning("zl_client_connect: no poller given and the runtime is "
                  "not running (call zl_runtime_init first)");
        return -EINVAL;
    }
    cl = calloc(1, sizeof(*cl));
    if (!cl)
        return -ENOMEM;
    zl__conn_cfg_init(&cl->cfg, &o->conn, h, data, "client");
    cl->cfg.ops = &client_ops;
    cl->host = g_strdup(o->host);
    cl->port = o->port;
    cl->timeout_ms = o->connect_timeout_ms; /* 0: no deadline */
    cl->reconnect = o->reconnect;
    cl->rmin = o->reconnect_min_ms;
    cl->rmax = o->reconnect_max_ms;
    cl->max_attempts = o->max_attempts;
    cl->attempt_delay_ms = o->attempt_delay_ms;
    for (unsigned i = 0; i < ZL__ATTEMPTS_MAX; i++)
        cl->att[i].fd = -1;
    cl->workers = o->workers ? o->workers : zl_runtime_workers();
    if (zl_addr_is_unix_text(o->host)) {
        rc = unix_peer(o, &tmp);
        if (rc < 0)
            goto fail;
        cl->numeric = true;
        cl->addrs = malloc(sizeof(*cl->addrs));
        if (cl->addrs) {
            cl->addrs[0] = tmp;
            cl->naddrs = 1;
        }
    } else if (zl_addr_from_ip(&tmp, o->host, o->port) == 0) {
        cl->numeric = true;
        cl->addrs = malloc(sizeof(*cl->addrs));
        if (cl->addrs) {
            cl->addrs[0] = tmp;
            cl->naddrs = 1;
        }
    } else if (!cl->workers) {
        g_warning("zl_client_connect: '%s' is a name and no worker pool is "
                  "available to resolve it",
                  o->host);
        rc = -EINVAL;
        goto fail;
    }
    if (o->local_ip || o->local_port) {
        const char *lip = o->local_ip;
        if (!lip)
            lip = cl->numeric && tmp.u.sa.sa_family == AF_INET6 ? "::"
                                                                : "0.0.0.0";
        if (zl_addr_from_ip(&cl->local, lip, o->local_port) < 0) {
            g_warning("zl_client_connect: local address '%s' is not an IP "
                      "literal",
                      lip);
            rc = -EINVAL;
            goto fail;
        }
        cl->has_local = true;
    }
    if ((cl->numeric && !cl->addrs) || !cl->host) {
        rc = -ENOMEM;
        goto fail;
    }
    c = zl__conn_new(p, cl);
    if (!c) {
        rc = -ENOMEM;
        goto fail;
    }
    c->state = ZL__CS_CONNECTING;
    cl->group.poller = p;
    cl->group.cfg = &cl->cfg;
    if (out)
        *out = zl_conn_ref(c);
    rc = zl_poller_post(p, ZL_TASK_INLINE, client_start, c, NULL);
    if (rc < 0) {
        if (out) {
            zl_conn_unref(c);
            *out = NULL;
        }
        free(c);
        goto fail;
    }
    return 0;

fail:
    free(cl->addrs);
    g_free(cl->host);
    free(cl);
    return rc;
}
